"""Customer profiles: attributes, the phone number, custom fields, notes and follow-ups.

The CRM's own knowledge of a customer (WeCom does not hold it): birthday, age band, place,
interests, a display name, the phone number, the tenant's custom fields, and the notes and
follow-ups (跟进记录) staff write. These functions are the only writers of that data; the
console, the API, imports and the CLI all call them.

The phone number is personal data. It is stored encrypted (``Customer.phone``) and found
without decrypting through ``phone_hash``: a keyed HMAC of the normalised number whose key is
derived from the application's ``SECRET_KEY`` (so a database dump alone cannot be searched
for a number by hashing guesses). Staff see it masked (``138****1234``) unless their role
holds ``customers.view_customer_phone``; events and the audit log only ever hold it masked.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from siyu.core.audit import record_audit
from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.core.scoping import DataScope
from siyu.customers.models import AgeBand, Customer, CustomerNote, CustomField

if TYPE_CHECKING:
    from siyu.tenancy.actor import Actor
    from siyu.tenancy.models import Staff

# --- event types (on the customer's timeline) ---------------------------------------------
# Profile attributes or custom-field values changed. payload {"changes": {field: [old, new]}}
# (the phone masked). key "customer.profile_updated:{customer_id}:{ms}:{digest}"
PROFILE_UPDATED = "customer.profile_updated"
# A note (kind "note") was written. key "customer.note_added:{note_id}"
NOTE_ADDED = "customer.note_added"
# A follow-up (call, chat, visit, meeting, other) happened: an interaction with the customer.
# key "customer.followed_up:{note_id}"
FOLLOWED_UP = "customer.followed_up"
# A note or follow-up was edited / deleted. key "...:{note_id}:{ms}"
NOTE_UPDATED = "customer.note_updated"
NOTE_DELETED = "customer.note_deleted"
# The tenant's custom field definitions changed (no customer). key "...:{field_id}:{ms}"
CUSTOM_FIELD_CREATED = "custom_field.created"
CUSTOM_FIELD_UPDATED = "custom_field.updated"

# --- limits ----------------------------------------------------------------------------------
PLACE_MAX = 32
DISPLAY_NAME_MAX = 64
INTEREST_MAX = 20  # characters per interest
INTERESTS_MAX = 30  # interests per customer
TEXT_VALUE_MAX = 500
CHOICE_MAX = 50
CHOICES_MAX = 100
NOTE_MAX = 5000
CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# Profile extras without a column of their own live in ``Customer.custom`` under reserved
# keys that start with "_" (custom field keys must start with a letter, so they never clash).
DISPLAY_NAME_KEY = "_display_name"
PROFILE_FIELDS = (
    "display_name",
    "birthday",
    "age_band",
    "province",
    "city",
    "interests",
    "phone",
    "phone_verified",
)


# --- the phone number -----------------------------------------------------------------------
MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
INTERNATIONAL = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_NOISE = re.compile(r"[\s\-().·/]")
PHONE_HASH_SALT = "siyu.customers.phone_hash"


def normalise_phone(raw: Any) -> str:
    """The canonical form of a phone number, or ``""`` for none.

    Mainland mobile numbers become their 11 digits whatever the prefix ("+86 138-1234-5678",
    "0086 13812345678", "8613812345678" → "13812345678"); other countries keep E.164 form
    ("+852 9123 4567" → "+85291234567"). Anything else (landlines, typos) is refused, so
    that one person's number always hashes the same.
    """
    text = unicodedata.normalize("NFKC", str(raw if raw is not None else "")).strip()
    if not text:
        return ""
    compact = _PHONE_NOISE.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if compact.startswith("+86"):
        compact = compact[3:]
    elif compact.startswith("86") and len(compact) == 13:
        compact = compact[2:]
    if MAINLAND_MOBILE.match(compact) or INTERNATIONAL.match(compact):
        return compact
    raise InvalidInput(
        _("%(value)s is not a mobile phone number") % {"value": text[:40]},
        code="invalid_phone",
        details={"phone": text[:40]},
    )


def phone_hash(phone: str) -> str:
    """The keyed fingerprint of a *normalised* number (``""`` for none): search and dedupe."""
    if not phone:
        return ""
    return salted_hmac(PHONE_HASH_SALT, phone, algorithm="sha256").hexdigest()


def phone_hash_of(raw: Any) -> str:
    """Normalise then fingerprint (raises ``InvalidInput`` for a malformed number)."""
    return phone_hash(normalise_phone(raw))


def mask_phone(phone: str) -> str:
    """``138****1234``: enough to recognise a number, not to call it."""
    if not phone:
        return ""
    if len(phone) <= 7:
        return phone[:1] + "*" * (len(phone) - 1)
    return f"{phone[:3]}****{phone[-4:]}"


def may_see_phone(actor: Actor) -> bool:
    return actor.has_perm("customers.view_customer_phone")


def shown_phone(actor: Actor, customer: Customer) -> str:
    """The customer's phone as this actor may see it: in full, or masked."""
    return customer.phone if may_see_phone(actor) else mask_phone(customer.phone)


def find_by_phone(queryset: QuerySet, raw: Any) -> QuerySet:
    """Customers of ``queryset`` with this phone number (by fingerprint, never decrypting).

    A malformed number finds nobody rather than raising: this serves search boxes.
    """
    try:
        fingerprint = phone_hash_of(raw)
    except InvalidInput:
        return queryset.none()
    return queryset.filter(phone_hash=fingerprint) if fingerprint else queryset.none()


def looks_like_phone(term: str) -> bool:
    """Whether a search term is a phone number (then it is matched by fingerprint)."""
    try:
        return bool(normalise_phone(term))
    except InvalidInput:
        return False


# --- helpers ----------------------------------------------------------------------------------
def _require(actor: Actor, permission: str) -> None:
    if not actor.has_perm(permission):
        raise Forbidden(
            _("Your role does not allow this (needs '%(permission)s')")
            % {"permission": permission},
            details={"required_permission": permission},
        )


def _locked_visible_customer(actor: Actor, customer: Customer | int) -> Customer:
    """The stored customer, locked, if the actor may see it (else 404)."""
    customer_id = getattr(customer, "pk", customer)
    found = (
        Customer.objects.for_actor(actor)
        .select_for_update(of=("self",))
        .filter(pk=customer_id, merged_into__isnull=True)
        .first()
    )
    if found is None:
        raise NotFound(_("Customer not found"), details={"id": customer_id})
    return found


def _millis() -> int:
    return int(timezone.now().timestamp() * 1000)


def _digest(value: Any) -> str:
    from siyu.customers.services import digest

    return digest(value)


def display_name(customer: Customer) -> str:
    """The name the brand gave the customer, else their WeCom name, else the external id."""
    return (customer.custom or {}).get(DISPLAY_NAME_KEY) or str(customer)


# --- profile attributes -------------------------------------------------------------------------
def _clean_text(value: Any, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise InvalidInput(_("%(field)s must be text") % {"field": name}, details={name: value})
    text = str(value).strip()
    if len(text) > limit:
        raise InvalidInput(
            _("%(field)s is at most %(limit)d characters") % {"field": name, "limit": limit},
            details={name: text[:limit]},
        )
    return text


def parse_date(value: Any, name: str) -> date | None:
    """A date from a ``date`` or an ISO ``YYYY-MM-DD`` string; empty → None."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidInput(
        _("%(field)s must be a date like 2026-01-31") % {"field": name},
        details={name: str(value)[:40]},
    )


def _clean_birthday(value: Any) -> date | None:
    birthday = parse_date(value, "birthday")
    if birthday is not None and not date(1900, 1, 1) <= birthday <= timezone.localdate():
        raise InvalidInput(
            _("A birthday lies between 1900 and today"), details={"birthday": str(birthday)}
        )
    return birthday


def _clean_interests(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = re.split(r"[;；,，、\n]", value)
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(_("Interests are a list of words"), details={"interests": value})
    interests: list[str] = []
    for item in value:
        text = _clean_text(item, "interests", INTEREST_MAX)
        if text and text not in interests:
            interests.append(text)
    if len(interests) > INTERESTS_MAX:
        raise InvalidInput(
            _("At most %(limit)d interests") % {"limit": INTERESTS_MAX},
            details={"interests": len(interests)},
        )
    return interests


def _clean_age_band(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    if text and text not in AgeBand.values:
        raise InvalidInput(
            _("Unknown age band %(value)s") % {"value": text[:20]},
            details={"age_band": text[:20], "choices": list(AgeBand.values)},
        )
    return text


def _clean_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1", "true", "false"):
        return value in (1, "1", "true")
    raise InvalidInput(_("%(field)s is true or false") % {"field": name}, details={name: value})


def clean_profile(values: dict[str, Any]) -> dict[str, Any]:
    """Validated profile attributes (only the keys given); unknown keys are refused."""
    unknown = sorted(set(values) - set(PROFILE_FIELDS))
    if unknown:
        raise InvalidInput(
            _("Unknown profile attributes: %(names)s") % {"names": ", ".join(unknown)},
            details={"unknown": unknown},
        )
    cleaners = {
        "display_name": lambda v: _clean_text(v, "display_name", DISPLAY_NAME_MAX),
        "birthday": _clean_birthday,
        "age_band": _clean_age_band,
        "province": lambda v: _clean_text(v, "province", PLACE_MAX),
        "city": lambda v: _clean_text(v, "city", PLACE_MAX),
        "interests": _clean_interests,
        "phone": normalise_phone,
        "phone_verified": lambda v: _clean_bool(v, "phone_verified"),
    }
    return {name: cleaners[name](value) for name, value in values.items()}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


@transaction.atomic
def update_profile(actor: Actor, customer: Customer | int, **values: Any) -> Customer:
    """Change profile attributes (``PROFILE_FIELDS``); only the keys given are touched.

    A new phone number is unverified unless ``phone_verified=True`` comes with it. Records
    ``customer.profile_updated`` (phone masked) and an audit entry when anything changed.
    """
    _require(actor, "customers.change_customer")
    cleaned = clean_profile(values)
    customer = _locked_visible_customer(actor, customer)
    if "phone" in cleaned and cleaned["phone"] != customer.phone:
        cleaned.setdefault("phone_verified", False)
    if not cleaned.get("phone", customer.phone) and cleaned.get("phone_verified"):
        raise InvalidInput(
            _("Only a phone number can be verified"), details={"phone_verified": True}
        )
    changes: dict[str, list[Any]] = {}
    custom = dict(customer.custom or {})
    for name, after in cleaned.items():
        if name == "display_name":
            before = custom.get(DISPLAY_NAME_KEY, "")
            if before != after:
                if after:
                    custom[DISPLAY_NAME_KEY] = after
                else:
                    custom.pop(DISPLAY_NAME_KEY, None)
                changes[name] = [before, after]
            continue
        before = getattr(customer, name)
        if before == after:
            continue
        setattr(customer, name, after)
        if name == "phone":
            customer.phone_hash = phone_hash(after)
            changes[name] = [mask_phone(before), mask_phone(after)]
        else:
            changes[name] = [_plain(before), _plain(after)]
    if not changes:
        return customer
    customer.custom = custom
    customer.save()
    _record_profile_change(actor, customer, changes)
    return customer


def _record_profile_change(actor: Actor, customer: Customer, changes: dict[str, Any]) -> None:
    record_event(
        customer.tenant_id,
        PROFILE_UPDATED,
        key=f"{PROFILE_UPDATED}:{customer.pk}:{_millis()}:{_digest(changes)}",
        staff=actor.staff,
        customer_id=customer.pk,
        payload={"changes": changes},
        source=actor.channel,
    )
    record_audit(actor, PROFILE_UPDATED, customer, changes=changes)


# --- custom fields: definitions -----------------------------------------------------------------
def custom_fields(tenant: Any, *, active_only: bool = True) -> list[CustomField]:
    fields = CustomField.objects.for_tenant(tenant)
    if active_only:
        fields = fields.filter(is_active=True)
    return list(fields.order_by("order", "id"))


def _clean_choices(field_type: str, choices: Any) -> list[str]:
    if field_type not in (CustomField.Type.CHOICE, CustomField.Type.MULTI_CHOICE):
        return []
    if isinstance(choices, str):
        choices = [line for line in re.split(r"[\n;；]", choices)]
    if not isinstance(choices, (list, tuple)):
        raise InvalidInput(_("Choices are a list of texts"), details={"choices": choices})
    cleaned: list[str] = []
    for choice in choices:
        text = _clean_text(choice, "choices", CHOICE_MAX)
        if text and text not in cleaned:
            cleaned.append(text)
    if not cleaned:
        raise InvalidInput(
            _("A choice field needs at least one choice"), details={"choices": list(choices)}
        )
    if len(cleaned) > CHOICES_MAX:
        raise InvalidInput(
            _("At most %(limit)d choices") % {"limit": CHOICES_MAX},
            details={"choices": len(cleaned)},
        )
    return cleaned


def _clean_definition(values: dict[str, Any], current: CustomField | None) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if "label" in values or current is None:
        label = _clean_text(values.get("label"), "label", 60)
        if not label:
            raise InvalidInput(_("A custom field needs a label"), details={"label": ""})
        cleaned["label"] = label
    field_type = values.get("type", current.type if current else CustomField.Type.TEXT)
    if field_type not in CustomField.Type.values:
        raise InvalidInput(
            _("Unknown field type %(type)s") % {"type": field_type},
            details={"type": field_type, "choices": list(CustomField.Type.values)},
        )
    cleaned["type"] = field_type
    if "choices" in values or "type" in values or current is None:
        given = values.get("choices", current.choices if current else [])
        cleaned["choices"] = _clean_choices(field_type, given)
    if "help_text" in values:
        cleaned["help_text"] = _clean_text(values["help_text"], "help_text", 200)
    if "order" in values:
        try:
            order = int(values["order"])
        except (TypeError, ValueError):
            order = -1
        if order < 0:
            raise InvalidInput(_("order is a number from 0"), details={"order": values["order"]})
        cleaned["order"] = order
    if "is_active" in values:
        cleaned["is_active"] = _clean_bool(values["is_active"], "is_active")
    return cleaned


@transaction.atomic
def create_custom_field(
    actor: Actor,
    *,
    key: str,
    label: str,
    type: str = CustomField.Type.TEXT,
    choices: Any = (),
    help_text: str = "",
    order: int = 0,
) -> CustomField:
    """Define a custom field; ``key`` (lower-case letters, digits, _) names it in rules,
    imports and the API and never changes."""
    _require(actor, "customers.add_customfield")
    key = (key or "").strip()
    if not CUSTOM_KEY.match(key):
        raise InvalidInput(
            _("A key starts with a lower-case letter, then letters, digits or _ (at most 40)"),
            details={"key": key},
        )
    values = _clean_definition(
        {"label": label, "type": type, "choices": choices, "help_text": help_text, "order": order},
        None,
    )
    fields = CustomField.objects.for_tenant(actor.tenant)
    if fields.filter(key=key).exists():
        raise Conflict(
            _("A custom field with the key %(key)s exists") % {"key": key}, details={"key": key}
        )
    field = fields.create(tenant=actor.tenant, key=key, **values)
    record_event(
        actor.tenant,
        CUSTOM_FIELD_CREATED,
        key=f"{CUSTOM_FIELD_CREATED}:{field.pk}",
        staff=actor.staff,
        payload={"key": key, "type": field.type},
        source=actor.channel,
    )
    record_audit(actor, CUSTOM_FIELD_CREATED, field, changes={"key": [None, key]})
    return field


@transaction.atomic
def update_custom_field(actor: Actor, field: CustomField | int, **values: Any) -> CustomField:
    """Change a field's label, choices, help text, order or active flag.

    The key never changes; the type only while no customer has a value for the field
    (stored values would no longer fit it). Deactivating hides the field and keeps values.
    """
    _require(actor, "customers.change_customfield")
    unknown = sorted(set(values) - {"label", "type", "choices", "help_text", "order", "is_active"})
    if unknown:
        raise InvalidInput(
            _("These cannot be changed: %(names)s") % {"names": ", ".join(unknown)},
            details={"unknown": unknown},
        )
    stored = custom_field_or_404(actor, field, lock=True)
    cleaned = _clean_definition(values, stored)
    if cleaned["type"] != stored.type and (
        Customer.objects.for_tenant(actor.tenant).filter(custom__has_key=stored.key).exists()
    ):
        raise Conflict(
            _("Customers have values for this field: its type cannot change"),
            details={"type": cleaned["type"]},
        )
    changes = {
        name: [getattr(stored, name), value]
        for name, value in cleaned.items()
        if getattr(stored, name) != value
    }
    if not changes:
        return stored
    for name, value in cleaned.items():
        setattr(stored, name, value)
    stored.save()
    record_event(
        actor.tenant,
        CUSTOM_FIELD_UPDATED,
        key=f"{CUSTOM_FIELD_UPDATED}:{stored.pk}:{_millis()}:{_digest(changes)}",
        staff=actor.staff,
        payload={"key": stored.key, "changes": changes},
        source=actor.channel,
    )
    record_audit(actor, CUSTOM_FIELD_UPDATED, stored, changes=changes)
    return stored


def deactivate_custom_field(actor: Actor, field: CustomField | int) -> CustomField:
    """Hide a field from forms and lists; its values stay on the customers."""
    return update_custom_field(actor, field, is_active=False)


def custom_field_or_404(actor: Actor, field: CustomField | int, *, lock: bool = False):
    field_id = getattr(field, "pk", field)
    fields = CustomField.objects.for_tenant(actor.tenant)
    if lock:
        fields = fields.select_for_update()
    found = fields.filter(pk=field_id).first()
    if found is None:
        raise NotFound(_("Custom field not found"), details={"id": field_id})
    return found


# --- custom fields: values ------------------------------------------------------------------------
def _bad_value(field: CustomField, message: str, value: Any) -> InvalidInput:
    return InvalidInput(
        message, code="invalid_custom_value", details={f"custom.{field.key}": value}
    )


def _clean_number(field: CustomField, value: Any) -> int | float:
    if isinstance(value, bool):
        raise _bad_value(field, _("%(label)s must be a number") % {"label": field.label}, value)
    if isinstance(value, (int, float)):
        number = Decimal(str(value))
    else:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise _bad_value(
                field, _("%(label)s must be a number") % {"label": field.label}, value
            ) from None
    if not number.is_finite() or not math.isfinite(float(number)):
        raise _bad_value(field, _("%(label)s must be a number") % {"label": field.label}, value)
    return int(number) if number == number.to_integral_value() else float(number)


def _split_choices(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in re.split(r"[;；,，、]", value) if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def clean_custom_value(field: CustomField, value: Any) -> Any:
    """The value to store for ``field`` (``None`` = no value), or ``InvalidInput`` naming
    ``custom.<key>``: text, a number (int or float), an ISO date string, one of the choices,
    or a list of choices (in the order of the field's choices)."""
    if value is None or value == "" or value == []:
        return None
    kind = field.type
    if kind == CustomField.Type.TEXT:
        if isinstance(value, (list, dict, bool)):
            raise _bad_value(field, _("%(label)s must be text") % {"label": field.label}, value)
        text = str(value).strip()
        if len(text) > TEXT_VALUE_MAX:
            raise _bad_value(
                field,
                _("%(label)s is at most %(limit)d characters")
                % {"label": field.label, "limit": TEXT_VALUE_MAX},
                text[:40],
            )
        return text or None
    if kind == CustomField.Type.NUMBER:
        return _clean_number(field, value)
    if kind == CustomField.Type.DATE:
        try:
            day = parse_date(value, f"custom.{field.key}")
        except InvalidInput:
            raise _bad_value(
                field,
                _("%(label)s must be a date like 2026-01-31") % {"label": field.label},
                str(value)[:40],
            ) from None
        return day.isoformat() if day else None
    if kind == CustomField.Type.CHOICE:
        text = str(value).strip() if not isinstance(value, (list, dict)) else None
        if text not in field.choices:
            raise _bad_value(
                field,
                _("%(label)s must be one of: %(choices)s")
                % {"label": field.label, "choices": ", ".join(field.choices)},
                value,
            )
        return text
    # multi-choice
    picked = [str(item).strip() for item in _split_choices(value)]
    wrong = [item for item in picked if item not in field.choices]
    if wrong:
        raise _bad_value(
            field,
            _("%(label)s must be among: %(choices)s")
            % {"label": field.label, "choices": ", ".join(field.choices)},
            wrong,
        )
    ordered = [choice for choice in field.choices if choice in picked]
    return ordered or None


@transaction.atomic
def set_custom_values(actor: Actor, customer: Customer | int, values: dict[str, Any]) -> Customer:
    """Set custom-field values on a customer (``{key: value}``; None or "" clears one).

    Every key must be an active field of the tenant and every value must fit its type;
    one bad value refuses them all. Records ``customer.profile_updated``.
    """
    _require(actor, "customers.change_customer")
    if not isinstance(values, dict):
        raise InvalidInput(_("Custom values are an object of key: value"))
    fields = {field.key: field for field in custom_fields(actor.tenant)}
    unknown = sorted(key for key in values if key not in fields)
    if unknown:
        raise InvalidInput(
            _("Unknown custom fields: %(keys)s") % {"keys": ", ".join(unknown)},
            code="unknown_custom_field",
            details={"unknown": unknown},
        )
    cleaned = {key: clean_custom_value(fields[key], value) for key, value in values.items()}
    customer = _locked_visible_customer(actor, customer)
    custom = dict(customer.custom or {})
    changes: dict[str, list[Any]] = {}
    for key, value in cleaned.items():
        before = custom.get(key)
        if before == value:
            continue
        if value is None:
            custom.pop(key, None)
        else:
            custom[key] = value
        changes[f"custom.{key}"] = [before, value]
    if not changes:
        return customer
    customer.custom = custom
    customer.save(update_fields=["custom", "updated_at"])
    _record_profile_change(actor, customer, changes)
    return customer


def custom_values(customer: Customer, fields: list[CustomField]) -> list[tuple[CustomField, Any]]:
    """(field, stored value or None) for each field, in the fields' order."""
    stored = customer.custom or {}
    return [(field, stored.get(field.key)) for field in fields]


# --- notes and follow-ups -------------------------------------------------------------------------
def _clean_kind(kind: Any) -> str:
    if kind not in CustomerNote.Kind.values:
        raise InvalidInput(
            _("Unknown kind of note: %(kind)s") % {"kind": kind},
            details={"kind": kind, "choices": list(CustomerNote.Kind.values)},
        )
    return kind


def _clean_content(content: Any) -> str:
    text = _clean_text(content, "content", NOTE_MAX)
    if not text:
        raise InvalidInput(_("A note needs some text"), details={"content": ""})
    return text


def _clean_moment(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                _("%(field)s must be a date and time") % {"field": name}, details={name: value}
            ) from None
    if not isinstance(value, datetime):
        raise InvalidInput(
            _("%(field)s must be a date and time") % {"field": name}, details={name: str(value)}
        )
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value


def _clean_next_contact(value: Any) -> datetime | None:
    moment = _clean_moment(value, "next_contact_at")
    if moment is not None and moment <= timezone.now():
        raise InvalidInput(
            _("The next contact must lie in the future"),
            details={"next_contact_at": moment.isoformat()},
        )
    return moment


def note_event_type(kind: str) -> str:
    """A plain note is bookkeeping; any other kind is an interaction (a follow-up)."""
    return NOTE_ADDED if kind == CustomerNote.Kind.NOTE else FOLLOWED_UP


def visible_notes(actor: Actor, customer: Customer) -> QuerySet:
    """The customer's notes, newest first (the customer is already visible to the actor)."""
    return (
        CustomerNote.objects.for_tenant(actor.tenant_id)
        .filter(customer_id=customer.pk)
        .select_related("author")
        .order_by("-happened_at", "-id")
    )


def note_or_404(actor: Actor, note_id: int, *, customer_id: int | None = None) -> CustomerNote:
    notes = CustomerNote.objects.for_actor(actor).filter(pk=note_id)
    if customer_id is not None:
        notes = notes.filter(customer_id=customer_id)
    note = notes.select_related("customer", "author").first()
    if note is None:
        raise NotFound(_("Note not found"), details={"id": note_id})
    return note


def _assignee_for(actor: Actor, customer: Customer, assignee: Staff | None) -> Staff:
    from siyu.tenancy.models import Staff

    if assignee is not None:
        if assignee.tenant_id != actor.tenant_id or not assignee.is_active:
            raise InvalidInput(_("The assignee is not an active staff member"))
        return assignee
    if customer.owner_id:
        owner = Staff.objects.for_tenant(actor.tenant_id).filter(pk=customer.owner_id).first()
        if owner is not None and owner.is_active:
            return owner
    if actor.staff is not None:
        return actor.staff
    raise InvalidInput(
        _("Nobody can be reminded of the next contact: the customer has no owner"),
        details={"next_contact_at": "no assignee"},
    )


def _schedule_follow_up(
    actor: Actor, note: CustomerNote, customer: Customer, assignee: Staff | None
) -> None:
    """The next contact of a follow-up becomes a task (once per note: ``note:<id>``)."""
    from siyu.engagement.models import StaffTask
    from siyu.engagement.services import create_task, reschedule_task

    existing = _note_task(note)
    if existing is not None and existing.status == StaffTask.Status.OPEN:
        reschedule_task(existing, due_at=note.next_contact_at)
        return
    staff = _assignee_for(actor, customer, assignee)
    source_key = f"note:{note.pk}"
    if existing is not None:  # the first reminder was done: a new date is a new task
        source_key = f"note:{note.pk}:{int(note.next_contact_at.timestamp())}"
    create_task(
        actor.tenant,
        staff,
        title=_("Follow up with %(customer)s") % {"customer": display_name(customer)},
        kind=StaffTask.Kind.FOLLOW_UP,
        detail=note.content[:1000],
        customer=customer,
        due_at=note.next_contact_at,
        source_key=source_key,
        by=actor,
    )


def _note_task(note: CustomerNote):
    from siyu.engagement.models import StaffTask

    return (
        StaffTask.objects.for_tenant(note.tenant_id)
        .filter(
            Q(source_key=f"note:{note.pk}") | Q(source_key__startswith=f"note:{note.pk}:"),
            customer_id=note.customer_id,
        )
        .order_by("-id")
        .first()
    )


def _note_payload(note: CustomerNote) -> dict[str, Any]:
    return {
        "note_id": note.pk,
        "kind": note.kind,
        "content": note.content[:200],
        "next_contact_at": note.next_contact_at.isoformat() if note.next_contact_at else None,
    }


@transaction.atomic
def add_note(
    actor: Actor,
    customer: Customer | int,
    *,
    content: str,
    kind: str = CustomerNote.Kind.NOTE,
    happened_at: datetime | str | None = None,
    next_contact_at: datetime | str | None = None,
    assignee: Staff | None = None,
) -> CustomerNote:
    """Write a note or a follow-up; a ``next_contact_at`` becomes a follow-up task for the
    customer's owner (else the author, or ``assignee`` when given), due then."""
    _require(actor, "customers.add_customernote")
    kind = _clean_kind(kind)
    content = _clean_content(content)
    happened_at = _clean_moment(happened_at, "happened_at") or timezone.now()
    if happened_at > timezone.now() + timedelta(minutes=5):
        raise InvalidInput(
            _("A note records what happened: not in the future"),
            details={"happened_at": happened_at.isoformat()},
        )
    next_contact_at = _clean_next_contact(next_contact_at)
    customer = _locked_visible_customer(actor, customer)
    note = CustomerNote.objects.for_tenant(actor.tenant).create(
        tenant=actor.tenant,
        customer=customer,
        author=actor.staff,
        kind=kind,
        content=content,
        happened_at=happened_at,
        next_contact_at=next_contact_at,
    )
    event_type = note_event_type(kind)
    record_event(
        actor.tenant,
        event_type,
        key=f"{event_type}:{note.pk}",
        staff=actor.staff or customer.owner,
        customer_id=customer.pk,
        payload=_note_payload(note),
        source=actor.channel,
        occurred_at=happened_at,
    )
    record_audit(actor, event_type, note, changes={"kind": [None, kind]})
    if next_contact_at is not None:
        _schedule_follow_up(actor, note, customer, assignee)
    return note


def may_manage_note(actor: Actor, note: CustomerNote) -> bool:
    """The author, their direct leader, or anyone whose role sees beyond their own customers
    (a department or tenant scope: team leads, operators, admins) may edit or delete."""
    if actor.is_superuser or actor.data_scope != DataScope.OWN:
        return True
    if actor.staff_id is None:
        return False
    if note.author_id == actor.staff_id:
        return True
    return bool(note.author and note.author.direct_leader_id == actor.staff_id)


def _check_manage(actor: Actor, note: CustomerNote, permission: str) -> None:
    _require(actor, permission)
    if not may_manage_note(actor, note):
        raise Forbidden(_("Only the author or a manager may change this note."))


@transaction.atomic
def update_note(actor: Actor, note: CustomerNote | int, **values: Any) -> CustomerNote:
    """Edit a note's content, kind, time or next contact (its task follows the new date;
    clearing the date dismisses the open reminder)."""
    allowed = {"content", "kind", "happened_at", "next_contact_at"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise InvalidInput(
            _("These cannot be changed: %(names)s") % {"names": ", ".join(unknown)},
            details={"unknown": unknown},
        )
    note = note_or_404(actor, getattr(note, "pk", note))
    _check_manage(actor, note, "customers.change_customernote")
    cleaned: dict[str, Any] = {}
    if "content" in values:
        cleaned["content"] = _clean_content(values["content"])
    if "kind" in values:
        cleaned["kind"] = _clean_kind(values["kind"])
    if "happened_at" in values:
        cleaned["happened_at"] = _clean_moment(values["happened_at"], "happened_at")
        if cleaned["happened_at"] is None:
            raise InvalidInput(_("happened_at is required"), details={"happened_at": None})
    if "next_contact_at" in values:
        after = _clean_moment(values["next_contact_at"], "next_contact_at")
        if after != note.next_contact_at:
            after = _clean_next_contact(after)
        cleaned["next_contact_at"] = after
    changes = {
        name: [_plain_moment(getattr(note, name)), _plain_moment(value)]
        for name, value in cleaned.items()
        if getattr(note, name) != value
    }
    if not changes:
        return note
    for name, value in cleaned.items():
        setattr(note, name, value)
    note.save()
    record_event(
        actor.tenant,
        NOTE_UPDATED,
        key=f"{NOTE_UPDATED}:{note.pk}:{_millis()}:{_digest(changes)}",
        staff=actor.staff or note.customer.owner,
        customer_id=note.customer_id,
        payload={**_note_payload(note), "changes": sorted(changes)},
        source=actor.channel,
    )
    record_audit(actor, NOTE_UPDATED, note, changes={k: v for k, v in changes.items()})
    if "next_contact_at" in changes:
        if note.next_contact_at is None:
            _dismiss_note_task(actor, note)
        else:
            _schedule_follow_up(actor, note, note.customer, None)
    return note


def _plain_moment(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _dismiss_note_task(actor: Actor, note: CustomerNote) -> None:
    from siyu.engagement.models import StaffTask
    from siyu.engagement.services import close_task_by_system

    task = _note_task(note)
    if task is not None and task.status == StaffTask.Status.OPEN:
        close_task_by_system(task, reason=f"note:{note.pk}")


@transaction.atomic
def delete_note(actor: Actor, note: CustomerNote | int) -> None:
    """Delete a note (its open reminder is dismissed); the timeline keeps that it existed."""
    note = note_or_404(actor, getattr(note, "pk", note))
    _check_manage(actor, note, "customers.delete_customernote")
    _dismiss_note_task(actor, note)
    record_event(
        actor.tenant,
        NOTE_DELETED,
        key=f"{NOTE_DELETED}:{note.pk}",
        staff=actor.staff or note.customer.owner,
        customer_id=note.customer_id,
        payload={"note_id": note.pk, "kind": note.kind},
        source=actor.channel,
    )
    record_audit(actor, NOTE_DELETED, note, changes={"content": [note.content[:200], None]})
    CustomerNote.objects.for_tenant(actor.tenant).filter(pk=note.pk).delete()
