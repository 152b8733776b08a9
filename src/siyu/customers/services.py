"""The only writers of customers, friendships (follows) and corp tags.

WeCom sync and callbacks feed these functions with WeCom's own data; each is one
transaction that writes and records its events (``siyu.customers.events``) together, and
each is idempotent: the same input twice leaves one row and one event.

Ordering. Callbacks can arrive late, be retried, or race a full sync. Every write takes a
``seen_at`` (WeCom's timestamp of the change, e.g. a callback's ``CreateTime``, or the moment
a sync read the data): a change older than the newest one already applied to the row is
ignored. ``seen_at=None`` applies the change without moving that watermark. Deletions are
also ignored when they predate the friendship they would end (a re-add overtook them).

Synced rows are facts from WeCom, not operator edits: they are recorded as events, not in
the audit log (which holds what people changed in the console, API and CLI).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.core.audit import diff
from siyu.core.errors import InvalidInput, NotFound
from siyu.core.events import IDEMPOTENCY_KEY_MAX_LENGTH, EventSpec, record_event, record_events
from siyu.customers import events
from siyu.customers.models import (
    STATE_MAX_LENGTH,
    Customer,
    CustomerTag,
    Follow,
    FollowTag,
    Tag,
    TagGroup,
)

REMOVED_BY = ("customer", "staff")


# --- helpers ----------------------------------------------------------------------------
def event_key(event_type: str, *parts: Any) -> str:
    """A deterministic idempotency key; parts too long for the column are hashed."""
    key = ":".join([event_type, *(str(part) for part in parts)])
    if len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        return key
    return f"{event_type}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def digest(value: Any) -> str:
    """A short stable fingerprint of JSON-able content (for keys of repeatable changes)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def as_datetime(value: Any, name: str, *, required: bool = False) -> datetime | None:
    """An aware datetime from a datetime or WeCom's unix seconds; naive times are refused."""
    if value is None or value == "":
        if required:
            raise InvalidInput(_("%(field)s is required") % {"field": name}, details={name: None})
        return None
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            raise InvalidInput(
                _("%(field)s must carry a time zone") % {"field": name}, details={name: str(value)}
            )
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    raise InvalidInput(
        _("%(field)s must be a date and time") % {"field": name}, details={name: str(value)}
    )


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def millis(moment: datetime | None) -> int:
    return int((moment or timezone.now()).timestamp() * 1000)


def is_stale(seen_at: datetime | None, watermark: datetime | None) -> bool:
    """Whether a change seen at ``seen_at`` is older than the newest one already applied.

    WeCom's timestamps are whole seconds: a callback stamped second S may describe a change
    made up to S + 0.999, later than a sync read in that same second. So a whole-second
    ``seen_at`` is stale only against an earlier second (its processor fetches the current
    state anyway, so applying it is safe).
    """
    if seen_at is None or watermark is None:
        return False
    if seen_at.microsecond == 0:
        return seen_at < watermark.replace(microsecond=0)
    return seen_at < watermark


def newer(watermark: datetime | None, seen_at: datetime | None) -> datetime | None:
    if seen_at is None:
        return watermark
    return seen_at if watermark is None or seen_at > watermark else watermark


def _text(value: Any, length: int) -> str:
    return ("" if value is None else str(value)).strip()[:length]


def _check_tenant(tenant: Any, *rows: Any) -> None:
    for row in rows:
        if row.tenant_id != tenant.pk:
            raise NotFound(_("%(model)s not found") % {"model": row._meta.verbose_name})


def _locked_customer(tenant: Any, customer: Customer) -> Customer:
    """The stored customer row, locked: writes about one customer run one after another."""
    _check_tenant(tenant, customer)
    return Customer.objects.for_tenant(tenant).select_for_update().get(pk=customer.pk)


# --- customers ----------------------------------------------------------------------------
def _profile_values(**values: Any) -> dict[str, Any]:
    try:
        kind = int(values["type"])
        gender = int(values["gender"])
    except (TypeError, ValueError) as error:
        raise InvalidInput(_("Customer type and gender are numbers")) from error
    if kind not in Customer.Type.values:
        raise InvalidInput(
            _("Unknown customer type %(type)s") % {"type": kind}, details={"type": kind}
        )
    return {
        "name": _text(values["name"], 128),
        "avatar": _text(values["avatar"], 512),
        "type": kind,
        "gender": gender if gender in Customer.Gender.values else Customer.Gender.UNKNOWN,
        "unionid": _text(values["unionid"], 64),
        "corp_name": _text(values["corp_name"], 128),
        "corp_full_name": _text(values["corp_full_name"], 255),
        "position": _text(values["position"], 128),
    }


def _clean_external_userid(external_userid: Any) -> str:
    value = _text(external_userid, 200)
    if not value or len(value) > 64:
        raise InvalidInput(
            _("external_userid must be 1 to 64 characters"),
            details={"external_userid": value},
        )
    return value


@transaction.atomic
def upsert_customer(
    tenant: Any,
    *,
    external_userid: str,
    name: str = "",
    avatar: str = "",
    type: int = 1,
    gender: int = 0,
    unionid: str = "",
    corp_name: str = "",
    corp_full_name: str = "",
    position: str = "",
    seen_at: datetime | None = None,
    source: str = "sync",
) -> tuple[Customer, bool]:
    """Create or refresh a customer's profile from WeCom's ``external_contact``; (row, created).

    The arguments are the whole profile as WeCom returns it (fields left out are reset to
    their defaults). A new row records no event: ``customer.added`` is recorded with the
    first friendship (``upsert_follow``). A changed profile records ``customer.updated``.
    """
    external_userid = _clean_external_userid(external_userid)
    seen_at = as_datetime(seen_at, "seen_at")
    values = _profile_values(
        name=name,
        avatar=avatar,
        type=type,
        gender=gender,
        unionid=unionid,
        corp_name=corp_name,
        corp_full_name=corp_full_name,
        position=position,
    )
    customers = Customer.objects.for_tenant(tenant)
    customer, created = customers.get_or_create(
        tenant=tenant,
        external_userid=external_userid,
        defaults={**values, "wecom_seen_at": seen_at},
    )
    if created:
        return customer, True
    customer = customers.select_for_update().get(pk=customer.pk)
    if is_stale(seen_at, customer.wecom_seen_at):
        return customer, False
    changes = diff(customer, values)
    watermark = newer(customer.wecom_seen_at, seen_at)
    if not changes and watermark == customer.wecom_seen_at:
        return customer, False
    for name_, value in values.items():
        setattr(customer, name_, value)
    customer.wecom_seen_at = watermark
    customer.save(update_fields=[*values, "wecom_seen_at", "updated_at"])
    if changes:
        record_event(
            tenant,
            events.CUSTOMER_UPDATED,
            key=event_key(
                events.CUSTOMER_UPDATED, external_userid, millis(seen_at), digest(changes)
            ),
            customer_id=customer.pk,
            staff=customer.owner,
            payload={"external_userid": external_userid, "changes": changes},
            source=source,
            occurred_at=seen_at,
        )
    return customer, False


# --- follows --------------------------------------------------------------------------------
def _follow_values(**values: Any) -> dict[str, Any]:
    mobiles = values["remark_mobiles"] or ()
    if isinstance(mobiles, str):
        mobiles = [mobiles]
    try:
        add_way = int(values["add_way"] or 0)
    except (TypeError, ValueError) as error:
        raise InvalidInput(_("add_way is a number"), details={"add_way": values["add_way"]}) from (
            error
        )
    return {
        "remark": _text(values["remark"], 128),
        "description": _text(values["description"], 255),
        "remark_mobiles": [str(mobile).strip() for mobile in mobiles if str(mobile).strip()],
        "remark_corp_name": _text(values["remark_corp_name"], 128),
        "added_at": values["added_at"],
        "add_way": add_way,
        "state": _text(values["state"], STATE_MAX_LENGTH),
        "oper_userid": _text(values["oper_userid"], 64),
    }


@transaction.atomic
def upsert_follow(
    tenant: Any,
    *,
    customer: Customer,
    staff: Any,
    added_at: datetime,
    remark: str = "",
    description: str = "",
    remark_mobiles: Sequence[str] = (),
    remark_corp_name: str = "",
    add_way: int = 0,
    state: str = "",
    oper_userid: str = "",
    tag_ids: list[str] | None = None,
    seen_at: datetime | None = None,
    source: str = "sync",
) -> tuple[Follow, bool]:
    """Create, refresh or re-activate a friendship from WeCom's ``follow_user`` entry.

    Returns ``(follow, began)``: ``began`` is true when a friendship began, i.e. a new follow
    or a deleted one re-activated by a re-add. Records ``customer.added`` with the
    customer's first friendship, ``follow.added`` for each friendship that begins (its key
    holds ``added_at``, so a re-add is a new fact), ``customer.returned`` when a lost
    customer comes back, ``follow.updated`` when remark, description, ... change.
    ``tag_ids`` (WeCom corp tag ids) replaces the friendship's corp tags; None leaves them.
    """
    _check_tenant(tenant, staff)
    added_at = as_datetime(added_at, "added_at", required=True)
    seen_at = as_datetime(seen_at, "seen_at")
    customer = _locked_customer(tenant, customer)
    values = _follow_values(
        remark=remark,
        description=description,
        remark_mobiles=remark_mobiles,
        remark_corp_name=remark_corp_name,
        added_at=added_at,
        add_way=add_way,
        state=state,
        oper_userid=oper_userid,
    )
    follows = Follow.objects.for_tenant(tenant)
    follow = follows.select_for_update().filter(customer=customer, staff=staff).first()
    first_ever = follow is None and not follows.filter(customer=customer).exists()
    began = created = False
    if follow is None:
        follow = follows.create(
            tenant=tenant, customer=customer, staff=staff, wecom_seen_at=seen_at, **values
        )
        began = created = True
    else:
        if is_stale(seen_at, follow.wecom_seen_at):
            return follow, False
        if not follow.is_active:
            deleted_at = follow.deleted_at or follow.updated_at
            if seen_at is None and seconds(added_at) < seconds(deleted_at):
                # Data read before the deletion: the friendship it shows has ended.
                return follow, False
            began = True
        changes = diff(follow, values)
        watermark = newer(follow.wecom_seen_at, seen_at)
        if changes or began or watermark != follow.wecom_seen_at:
            for name, value in values.items():
                setattr(follow, name, value)
            follow.status = Follow.Status.ACTIVE
            follow.deleted_at = None
            follow.wecom_seen_at = watermark
            follow.save()
        if changes and not began:
            follow.customer = customer
            record_event(
                tenant,
                events.FOLLOW_UPDATED,
                key=event_key(
                    events.FOLLOW_UPDATED,
                    customer.external_userid,
                    staff.wecom_userid,
                    millis(seen_at),
                    digest(changes),
                ),
                staff=staff,
                customer_id=customer.pk,
                payload={**_follow_ids(follow), "changes": changes},
                source=source,
                occurred_at=seen_at,
            )
    follow.customer = customer
    if began:
        _friendship_began(follow, first_ever=first_ever, source=source)
    if tag_ids is not None:
        _replace_tags(follow, tag_ids, seen_at=seen_at, source=source, new=created)
    return follow, began


def _follow_ids(follow: Follow) -> dict[str, Any]:
    return {"external_userid": follow.customer.external_userid, "userid": follow.staff.wecom_userid}


def _friendship_began(follow: Follow, *, first_ever: bool, source: str) -> None:
    customer, staff, tenant = follow.customer, follow.staff, follow.tenant_id
    ids = _follow_ids(follow)
    payload = {
        **ids,
        "added_at": follow.added_at.isoformat(),
        "add_way": follow.add_way,
        "state": follow.state,
        "oper_userid": follow.oper_userid,
    }
    specs = []  # recorded together: one look-up of their keys, one insert
    if first_ever:
        specs.append(
            EventSpec(
                events.CUSTOMER_ADDED,
                key=event_key(events.CUSTOMER_ADDED, customer.external_userid),
                staff=staff,
                customer_id=customer.pk,
                payload=payload,
                source=source,
                occurred_at=follow.added_at,
            )
        )
    specs.append(
        EventSpec(
            events.FOLLOW_ADDED,
            key=event_key(
                events.FOLLOW_ADDED,
                customer.external_userid,
                staff.wecom_userid,
                seconds(follow.added_at),
            ),
            staff=staff,
            customer_id=customer.pk,
            payload={**payload, "first_for_customer": first_ever},
            source=source,
            occurred_at=follow.added_at,
        )
    )
    record_events(tenant, specs)
    update_fields = []
    if customer.first_added_at is None or follow.added_at < customer.first_added_at:
        customer.first_added_at = follow.added_at
        customer.source_state = follow.state
        update_fields += ["first_added_at", "source_state"]
    if customer.status == Customer.Status.LOST:
        customer.status = Customer.Status.ACTIVE
        customer.lost_at = None
        update_fields += ["status", "lost_at"]
        record_event(
            tenant,
            events.CUSTOMER_RETURNED,
            key=event_key(
                events.CUSTOMER_RETURNED, customer.external_userid, seconds(follow.added_at)
            ),
            staff=staff,
            customer_id=customer.pk,
            payload=payload,
            source=source,
            occurred_at=follow.added_at,
        )
    owned_now = first_ever and customer.owner_id is None
    if owned_now:
        customer.owner = staff  # their only friendship: no need to look for the earliest
        update_fields.append("owner")
    if update_fields:
        customer.save(update_fields=[*update_fields, "updated_at"])
    if not owned_now:
        _refresh_owner(customer, cause_at=follow.added_at, source=source)


def _refresh_owner(customer: Customer, *, cause_at: datetime, source: str) -> None:
    """Owner = staff of the earliest active friendship; a lost customer keeps their last."""
    first = (
        Follow.objects.for_tenant(customer.tenant_id)
        .filter(customer=customer, status=Follow.Status.ACTIVE)
        .select_related("staff")
        .order_by("added_at", "id")
        .first()
    )
    if first is None or first.staff_id == customer.owner_id:
        return
    previous = customer.owner
    customer.owner = first.staff
    customer.save(update_fields=["owner", "updated_at"])
    if previous is None:
        return  # the first owner: customer.added already says who
    record_event(
        customer.tenant_id,
        events.CUSTOMER_OWNER_CHANGED,
        key=event_key(
            events.CUSTOMER_OWNER_CHANGED,
            customer.external_userid,
            first.staff.wecom_userid,
            seconds(cause_at),
        ),
        staff=first.staff,
        customer_id=customer.pk,
        payload={
            "external_userid": customer.external_userid,
            "from_userid": previous.wecom_userid,
            "to_userid": first.staff.wecom_userid,
        },
        source=source,
        occurred_at=cause_at,
    )


@transaction.atomic
def remove_follow(
    tenant: Any,
    *,
    customer: Customer,
    staff: Any,
    by: str,
    at: datetime,
    source: str = "sync",
) -> Follow | None:
    """End a friendship: ``by="customer"`` (they deleted the staff) or ``by="staff"``.

    Records ``follow.deleted_by_customer`` (a churn signal) or ``follow.deleted_by_staff``;
    the friendship's corp tags go with it. When no active friendship remains the customer
    is lost (``customer.lost``); otherwise the owner may move to the next earliest staff.
    Returns the follow (unchanged when already ended, or when ``at`` is older than its
    newest change), or None when the two never were friends.
    """
    if by not in REMOVED_BY:
        raise InvalidInput(
            _("by must be 'customer' or 'staff'"), details={"by": by}, code="invalid"
        )
    _check_tenant(tenant, staff)
    at = as_datetime(at, "at", required=True)
    customer = _locked_customer(tenant, customer)
    follow = (
        Follow.objects.for_tenant(tenant)
        .select_for_update()
        .filter(customer=customer, staff=staff)
        .first()
    )
    if follow is None or not follow.is_active:
        return follow
    if is_stale(at, follow.wecom_seen_at) or seconds(at) < seconds(follow.added_at):
        return follow  # a deletion that a later change (a re-add) has overtaken
    follow.customer = customer
    event_type = (
        events.FOLLOW_DELETED_BY_CUSTOMER if by == "customer" else (events.FOLLOW_DELETED_BY_STAFF)
    )
    follow.status = (
        Follow.Status.DELETED_BY_CUSTOMER if by == "customer" else Follow.Status.DELETED_BY_STAFF
    )
    follow.deleted_at = at
    follow.wecom_seen_at = newer(follow.wecom_seen_at, at)
    follow.save(update_fields=["status", "deleted_at", "wecom_seen_at", "updated_at"])
    tags = FollowTag.objects.for_tenant(tenant).filter(follow=follow)
    tag_ids = sorted(tags.exclude(tag__wecom_tag_id="").values_list("tag__wecom_tag_id", flat=True))
    marked = list(tags.values_list("tag_id", flat=True))
    tags.delete()
    # A tag only this friendship carried leaves the customer with it (CustomerTag).
    unlink_unmarked_customer_tags(tenant, [(customer.pk, tag_pk) for tag_pk in marked])
    record_event(
        tenant,
        event_type,
        key=event_key(
            event_type, customer.external_userid, staff.wecom_userid, seconds(follow.added_at)
        ),
        staff=staff,
        customer_id=customer.pk,
        payload={
            **_follow_ids(follow),
            "added_at": follow.added_at.isoformat(),
            "deleted_at": at.isoformat(),
            "state": follow.state,
            "tag_ids": tag_ids,
        },
        source=source,
        occurred_at=at,
    )
    still_active = Follow.objects.for_tenant(tenant).filter(
        customer=customer, status=Follow.Status.ACTIVE
    )
    if still_active.exists():
        _refresh_owner(customer, cause_at=at, source=source)
    elif customer.status != Customer.Status.LOST:
        customer.status = Customer.Status.LOST
        customer.lost_at = at
        customer.save(update_fields=["status", "lost_at", "updated_at"])
        record_event(
            tenant,
            events.CUSTOMER_LOST,
            key=event_key(events.CUSTOMER_LOST, customer.external_userid, seconds(at)),
            staff=staff,
            customer_id=customer.pk,
            payload={**_follow_ids(follow), "by": by, "lost_at": at.isoformat()},
            source=source,
            occurred_at=at,
        )
    return follow


# --- many at once (a first import: the WeCom sync) --------------------------------------------
FOLLOW_DEFAULTS: dict[str, Any] = {
    "remark": "",
    "description": "",
    "remark_mobiles": (),
    "remark_corp_name": "",
    "add_way": 0,
    "state": "",
    "oper_userid": "",
}


@transaction.atomic
def create_customers(
    tenant: Any, profiles: Sequence[dict[str, Any]], *, seen_at: datetime | None = None
) -> dict[str, tuple[Customer, bool]]:
    """``upsert_customer`` for many customers, the new ones in one INSERT.

    ``profiles`` are ``upsert_customer``'s keyword arguments (``external_userid``, ``name``,
    ...). Returns ``{external_userid: (customer, created)}``; customers already known are
    returned as stored, untouched (refresh a changed profile with ``upsert_customer``). Like
    ``upsert_customer``, a new customer records no event. Raises ``InvalidInput`` (and
    creates nothing) when a profile is invalid.
    """
    seen_at = as_datetime(seen_at, "seen_at")
    wanted: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        fields = dict(profile)
        external_userid = _clean_external_userid(fields.pop("external_userid", ""))
        if external_userid not in wanted:
            defaults = {"name": "", "avatar": "", "type": 1, "gender": 0, "unionid": ""}
            defaults.update({"corp_name": "", "corp_full_name": "", "position": ""})
            wanted[external_userid] = _profile_values(**{**defaults, **fields})
    customers = Customer.objects.for_tenant(tenant)
    result = {
        customer.external_userid: (customer, False)
        for customer in customers.filter(external_userid__in=list(wanted))
    }
    new = [
        Customer(tenant=tenant, external_userid=external_userid, wecom_seen_at=seen_at, **values)
        for external_userid, values in wanted.items()
        if external_userid not in result
    ]
    if not new:
        return result
    try:
        with transaction.atomic():
            customers.bulk_create(new)
    except IntegrityError:  # created meanwhile (a callback): one by one, then
        for customer in new:
            values = {name: getattr(customer, name) for name in wanted[customer.external_userid]}
            result[customer.external_userid] = upsert_customer(
                tenant, external_userid=customer.external_userid, seen_at=seen_at, **values
            )
        return result
    for customer in new:
        result[customer.external_userid] = (customer, True)
    return result


@transaction.atomic
def add_follows(
    tenant: Any,
    items: Sequence[tuple[Customer, Any, dict[str, Any]]],
    *,
    seen_at: datetime | None = None,
    source: str = "sync",
) -> list[tuple[Follow, bool]]:
    """``upsert_follow`` for many friendships, the new ones in a few bulk statements.

    ``items`` are ``(customer, staff, fields)`` with ``fields`` the rest of
    ``upsert_follow``'s keyword arguments (``added_at``, ``remark``, ..., ``tag_ids``).
    Friendships that do not exist yet, of customers who are not lost, are inserted together
    with their tags, the customers' first-add and owner bookkeeping, and the same events,
    keys and payloads as ``upsert_follow`` would record one by one; any
    other item (an existing friendship, a lost customer, the same pair twice) goes through
    ``upsert_follow``, with every other item of the same customer. Each customer's events
    come in the order given; events of different customers may interleave differently.
    Returns ``(follow, began)`` in the order of ``items``.
    """
    seen_at = as_datetime(seen_at, "seen_at")
    prepared = []
    for customer, staff, fields in items:
        _check_tenant(tenant, customer, staff)
        given = {**FOLLOW_DEFAULTS, **fields}
        tag_ids = given.pop("tag_ids", None)
        given["added_at"] = as_datetime(given.get("added_at"), "added_at", required=True)
        prepared.append((customer, staff, _follow_values(**given), tag_ids, fields))
    customer_ids = {customer.pk for customer, *_rest in prepared}
    stored = {
        customer.pk: customer
        for customer in Customer.objects.for_tenant(tenant)
        .select_for_update()
        .filter(pk__in=customer_ids)
    }
    follows = Follow.objects.for_tenant(tenant)
    pairs = set(follows.filter(customer_id__in=customer_ids).values_list("customer_id", "staff_id"))
    # A customer with any item that needs the one-by-one path goes that way entirely, so
    # that each customer's changes (and owner moves) happen in the order given.
    claimed, one_by_one = set(), set()
    for customer, staff, *_rest in prepared:
        pair, current = (customer.pk, staff.pk), stored.get(customer.pk)
        if pair in pairs or pair in claimed or current is None or current.status != "active":
            one_by_one.add(customer.pk)
        claimed.add(pair)
    quick = [i for i, item in enumerate(prepared) if item[0].pk not in one_by_one]
    slow = [i for i, item in enumerate(prepared) if item[0].pk in one_by_one]
    results: dict[int, tuple[Follow, bool]] = {}
    if quick:
        try:
            with transaction.atomic():
                results = _insert_follows(
                    tenant, [prepared[i] for i in quick], quick, stored, pairs, seen_at, source
                )
        except IntegrityError:  # a callback added one of them meanwhile: one by one, then
            results, slow = {}, sorted(slow + quick)
    for index in slow:
        customer, staff, _values, _tag_ids, fields = prepared[index]
        results[index] = upsert_follow(
            tenant, customer=customer, staff=staff, seen_at=seen_at, source=source, **fields
        )
    return [results[index] for index in range(len(prepared))]


def _insert_follows(
    tenant: Any,
    prepared: list[tuple[Customer, Any, dict[str, Any], list[str] | None, dict[str, Any]]],
    indexes: list[int],
    stored: dict[int, Customer],
    pairs: set[tuple[int, int]],
    seen_at: datetime | None,
    source: str,
) -> dict[int, tuple[Follow, bool]]:
    from siyu.core.events import EventSpec, record_events
    from siyu.tenancy.models import Staff

    tenant_id = getattr(tenant, "pk", tenant)
    new = [
        Follow(
            tenant_id=tenant_id,
            customer=stored[customer.pk],
            staff=staff,
            wecom_seen_at=seen_at,
            **values,
        )
        for customer, staff, values, _tag_ids, _fields in prepared
    ]
    Follow.objects.for_tenant(tenant_id).bulk_create(new)
    customer_ids = list({follow.customer_id for follow in new})
    # The earliest active friendship of each customer so far decides their owner.
    earliest: dict[int, tuple[datetime, int]] = {}
    for customer_id, staff_id, added_at in (
        Follow.objects.for_tenant(tenant_id)
        .filter(customer_id__in=customer_ids, status=Follow.Status.ACTIVE)
        .exclude(pk__in=[follow.pk for follow in new])
        .order_by("added_at", "id")
        .values_list("customer_id", "staff_id", "added_at")
    ):
        earliest.setdefault(customer_id, (added_at, staff_id))
    userids = {staff.pk: staff.wecom_userid for _c, staff, *_rest in prepared}
    missing = {staff_id for _a, staff_id in earliest.values()} | {
        c.owner_id for c in stored.values() if c.owner_id
    }
    missing -= set(userids)
    if missing:
        userids.update(
            Staff.objects.for_tenant(tenant_id)
            .filter(pk__in=missing)
            .values_list("id", "wecom_userid")
        )
    befriended = {customer_id for customer_id, _staff_id in pairs}
    wanted_tags = {
        tag_id for *_rest, tag_ids, _fields in prepared for tag_id in _clean_tag_ids(tag_ids or ())
    }
    tags = {
        tag.wecom_tag_id: tag
        for tag in Tag.objects.for_tenant(tenant_id).filter(wecom_tag_id__in=wanted_tags)
    }
    specs: list[EventSpec] = []
    links: list[FollowTag] = []
    touched: dict[int, Customer] = {}
    for follow, (_c, staff, _values, tag_ids, _fields) in zip(new, prepared, strict=True):
        customer = follow.customer
        first_ever = customer.pk not in befriended
        befriended.add(customer.pk)
        ids = {"external_userid": customer.external_userid, "userid": staff.wecom_userid}
        payload = {
            **ids,
            "added_at": follow.added_at.isoformat(),
            "add_way": follow.add_way,
            "state": follow.state,
            "oper_userid": follow.oper_userid,
        }
        common = {
            "staff": staff,
            "customer_id": customer.pk,
            "source": source,
            "occurred_at": follow.added_at,
        }
        if first_ever:
            key = event_key(events.CUSTOMER_ADDED, customer.external_userid)
            specs.append(EventSpec(events.CUSTOMER_ADDED, key, payload=payload, **common))
        key = event_key(
            events.FOLLOW_ADDED,
            customer.external_userid,
            staff.wecom_userid,
            seconds(follow.added_at),
        )
        specs.append(
            EventSpec(
                events.FOLLOW_ADDED,
                key,
                payload={**payload, "first_for_customer": first_ever},
                **common,
            )
        )
        if customer.first_added_at is None or follow.added_at < customer.first_added_at:
            customer.first_added_at = follow.added_at
            customer.source_state = follow.state
            touched[customer.pk] = customer
        # _refresh_owner: the staff of the earliest active friendship (ties: the older row)
        current = earliest.get(customer.pk)
        if current is None or follow.added_at < current[0]:
            earliest[customer.pk] = (follow.added_at, staff.pk)
        owner_id = earliest[customer.pk][1]
        if owner_id != customer.owner_id:
            previous = customer.owner_id
            customer.owner_id = owner_id
            touched[customer.pk] = customer
            if previous is not None:
                key = event_key(
                    events.CUSTOMER_OWNER_CHANGED,
                    customer.external_userid,
                    userids[owner_id],
                    seconds(follow.added_at),
                )
                specs.append(
                    EventSpec(
                        events.CUSTOMER_OWNER_CHANGED,
                        key,
                        staff=Staff(pk=owner_id, tenant_id=tenant_id),
                        customer_id=customer.pk,
                        payload={
                            "external_userid": customer.external_userid,
                            "from_userid": userids[previous],
                            "to_userid": userids[owner_id],
                        },
                        source=source,
                        occurred_at=follow.added_at,
                    )
                )
        if tag_ids is not None:
            added = [tag_id for tag_id in _clean_tag_ids(tag_ids) if tag_id in tags]
            if added:
                links += [FollowTag(tenant_id=tenant_id, follow=follow, tag=tags[t]) for t in added]
                summary = {"added": added, "removed": []}
                key = event_key(
                    events.FOLLOW_TAGS_CHANGED,
                    customer.external_userid,
                    staff.wecom_userid,
                    millis(seen_at),
                    digest(summary),
                )
                specs.append(
                    EventSpec(
                        events.FOLLOW_TAGS_CHANGED,
                        key,
                        staff=staff,
                        customer_id=customer.pk,
                        payload={**ids, **summary},
                        source=source,
                        occurred_at=seen_at,
                    )
                )
    FollowTag.objects.for_tenant(tenant_id).bulk_create(links)
    link_customer_tags(tenant_id, [(link.follow.customer_id, link.tag_id) for link in links])
    for customer in touched.values():  # one UPDATE each is faster than bulk_update's CASEs
        customer.save(update_fields=["first_added_at", "source_state", "owner", "updated_at"])
    record_events(tenant_id, specs)
    return {index: (follow, True) for index, follow in zip(indexes, new, strict=True)}


def _clean_tag_ids(tag_ids: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(tag_id).strip() for tag_id in tag_ids if str(tag_id).strip()))


# --- tags -------------------------------------------------------------------------------------
@dataclass
class TagChange:
    """What ``set_follow_tags`` did, in WeCom tag ids."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # not (yet) synced: sync the tags first

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


@transaction.atomic
def set_follow_tags(
    tenant: Any,
    follow: Follow,
    tag_ids: Iterable[str],
    *,
    seen_at: datetime | None = None,
    source: str = "sync",
) -> TagChange:
    """Make the friendship's corp tags exactly ``tag_ids`` (WeCom tag ids).

    Ids of tags not synced yet are reported in ``unknown`` and skipped (sync the corp tags,
    then call again); local tags (without a WeCom id) are left alone. Records
    ``follow.tags_changed`` when something changed. Ignored for an ended friendship or an
    update older than the friendship's newest change.
    """
    _check_tenant(tenant, follow)
    seen_at = as_datetime(seen_at, "seen_at")
    follow = (
        Follow.objects.for_tenant(tenant)
        .select_for_update(of=("self",))
        .select_related("customer", "staff")
        .get(pk=follow.pk)
    )
    if not follow.is_active or is_stale(seen_at, follow.wecom_seen_at):
        return TagChange()
    change = _replace_tags(follow, tag_ids, seen_at=seen_at, source=source)
    watermark = newer(follow.wecom_seen_at, seen_at)
    if watermark != follow.wecom_seen_at:
        follow.wecom_seen_at = watermark
        follow.save(update_fields=["wecom_seen_at", "updated_at"])
    return change


def _replace_tags(
    follow: Follow,
    tag_ids: Iterable[str],
    *,
    seen_at: datetime | None,
    source: str,
    new: bool = False,
) -> TagChange:
    """``new``: the follow was created in this transaction, so it carries no tag yet."""
    wanted = _clean_tag_ids(tag_ids)
    tags = (
        {
            tag.wecom_tag_id: tag
            for tag in Tag.objects.for_tenant(follow.tenant_id).filter(wecom_tag_id__in=wanted)
        }
        if wanted
        else {}
    )
    current = (
        {}
        if new
        else {
            link.tag.wecom_tag_id: link
            for link in FollowTag.objects.for_tenant(follow.tenant_id)
            .filter(follow=follow)
            .exclude(tag__wecom_tag_id="")
            .select_related("tag")
        }
    )
    change = TagChange(
        added=[tag_id for tag_id in wanted if tag_id in tags and tag_id not in current],
        removed=sorted(tag_id for tag_id in current if tag_id not in wanted),
        unknown=[tag_id for tag_id in wanted if tag_id not in tags],
    )
    if not change.changed:
        return change
    links = FollowTag.objects.for_tenant(follow.tenant_id)
    links.filter(pk__in=[current[tag_id].pk for tag_id in change.removed]).delete()
    links.bulk_create(
        FollowTag(tenant_id=follow.tenant_id, follow=follow, tag=tags[tag_id])
        for tag_id in change.added
    )
    customer_id = follow.customer_id
    link_customer_tags(follow.tenant_id, [(customer_id, tags[t].pk) for t in change.added])
    unlink_unmarked_customer_tags(
        follow.tenant_id, [(customer_id, current[t].tag_id) for t in change.removed]
    )
    summary = {"added": change.added, "removed": change.removed}
    record_event(
        follow.tenant_id,
        events.FOLLOW_TAGS_CHANGED,
        key=event_key(
            events.FOLLOW_TAGS_CHANGED,
            follow.customer.external_userid,
            follow.staff.wecom_userid,
            millis(seen_at),
            digest(summary),
        ),
        staff=follow.staff,
        customer_id=follow.customer_id,
        payload={**_follow_ids(follow), **summary},
        source=source,
        occurred_at=seen_at,
    )
    return change


@contextmanager
def tag_library_lock(tenant: Any) -> Iterator[None]:
    """Hold the tenant's tag library for one "ask WeCom, then write what it said" step.

    Every writer of the library mirrors a WeCom answer: a callback or sync reads the whole
    list, an edit in Siyu writes what ``add_corp_tag`` and friends returned. Two of them
    interleaving would let the older answer land last (an echo's snapshot read just before
    a delete would bring the deleted tag back), so each holds this lock from its WeCom call
    to its commit. It is one transaction with the tenant row locked ``FOR NO KEY UPDATE``
    (PostgreSQL; inserts of the tenant's other rows are not blocked); SQLite's IMMEDIATE
    transactions already serialise writers. Library edits are rare, so holding a
    transaction across one WeCom call costs nothing that matters.
    """
    from siyu.tenancy.models import Tenant

    tenant_id = getattr(tenant, "pk", tenant)
    with transaction.atomic():
        list(Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).values("pk"))
        yield


@dataclass
class TagSyncStats:
    """What ``sync_corp_tags`` changed."""

    groups_created: int = 0
    groups_updated: int = 0
    groups_deleted: int = 0
    tags_created: int = 0
    tags_updated: int = 0
    tags_deleted: int = 0

    @property
    def changed(self) -> bool:
        return any(asdict(self).values())


def _wecom_id(entry: dict[str, Any], key: str) -> str:
    value = _text(entry.get(key), 65)
    if not value or len(value) > 64:
        raise InvalidInput(
            _("Every tag group and tag needs its WeCom id (%(key)s)") % {"key": key},
            details={key: entry.get(key)},
        )
    return value


def _order(entry: dict[str, Any]) -> int:
    try:
        return int(entry.get("order") or 0)
    except (TypeError, ValueError):
        return 0


def _created(entry: dict[str, Any]) -> datetime | None:
    value = entry.get("create_time")
    return as_datetime(value, "create_time") if value else None


def _apply(row: Any, values: dict[str, Any]) -> bool:
    changed = [name for name, value in values.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, values[name])
    if changed:
        row.save(update_fields=[*changed, "updated_at"])
    return bool(changed)


@transaction.atomic
def sync_corp_tags(
    tenant: Any,
    tag_groups: list[dict[str, Any]],
    *,
    seen_at: datetime | None = None,
    source: str = "sync",
) -> TagSyncStats:
    """Mirror WeCom's corp tag library (``get_corp_tag_list``'s ``tag_group`` list).

    Upserts groups and tags by their WeCom ids, marks those WeCom no longer lists (or
    flags ``deleted``) as deleted, and restores any that come back. Local tags are left
    alone. Records one ``tag.synced`` event when anything changed.
    """
    seen_at = as_datetime(seen_at, "seen_at")
    stats = TagSyncStats()
    touched: dict[str, list[str]] = {"created": [], "updated": [], "deleted": []}
    groups = {
        group.wecom_group_id: group
        for group in TagGroup.objects.for_tenant(tenant).exclude(wecom_group_id="")
    }
    tags = {
        tag.wecom_tag_id: tag for tag in Tag.objects.for_tenant(tenant).exclude(wecom_tag_id="")
    }
    seen_groups: set[str] = set()
    seen_tags: set[str] = set()
    for entry in tag_groups:
        group_id = _wecom_id(entry, "group_id")
        seen_groups.add(group_id)
        group_deleted = bool(entry.get("deleted"))
        values = {
            "name": _text(entry.get("group_name"), 64),
            "order": _order(entry),
            "deleted": group_deleted,
            "wecom_created_at": _created(entry),
        }
        group = groups.get(group_id)
        if group is None:
            group = TagGroup.objects.for_tenant(tenant).create(
                tenant=tenant, wecom_group_id=group_id, **values
            )
            groups[group_id] = group
            stats.groups_created += 1
        else:
            was_deleted = group.deleted
            if _apply(group, values):
                if group.deleted and not was_deleted:
                    stats.groups_deleted += 1
                else:
                    stats.groups_updated += 1
        for tag_entry in entry.get("tag") or ():
            tag_id = _wecom_id(tag_entry, "id")
            seen_tags.add(tag_id)
            tag_values = {
                "group": group,
                "name": _text(tag_entry.get("name"), 64),
                "order": _order(tag_entry),
                "deleted": group_deleted or bool(tag_entry.get("deleted")),
                "wecom_created_at": _created(tag_entry),
            }
            tag = tags.get(tag_id)
            if tag is None:
                tags[tag_id] = Tag.objects.for_tenant(tenant).create(
                    tenant=tenant, wecom_tag_id=tag_id, **tag_values
                )
                stats.tags_created += 1
                touched["created"].append(tag_id)
            else:
                was_deleted = tag.deleted
                if _apply(tag, tag_values):
                    if tag.deleted and not was_deleted:
                        stats.tags_deleted += 1
                        touched["deleted"].append(tag_id)
                    else:
                        stats.tags_updated += 1
                        touched["updated"].append(tag_id)
    for group_id, group in groups.items():
        if group_id not in seen_groups and not group.deleted:
            _apply(group, {"deleted": True})
            stats.groups_deleted += 1
    for tag_id, tag in tags.items():
        if tag_id not in seen_tags and not tag.deleted:
            _apply(tag, {"deleted": True})
            stats.tags_deleted += 1
            touched["deleted"].append(tag_id)
    # WeCom takes a deleted tag off every customer: so do the friendships and customers here.
    drop_tag_links(tenant, [tags[tag_id].pk for tag_id in touched["deleted"]])
    if stats.changed:
        summary = {**asdict(stats), "tag_ids": touched}
        record_event(
            tenant,
            events.TAGS_SYNCED,
            key=event_key(events.TAGS_SYNCED, millis(seen_at), digest(summary)),
            payload=summary,
            source=source,
            occurred_at=seen_at,
        )
    return stats


# --- the customer-level view of tags (CustomerTag) ------------------------------------------
# ``CustomerTag`` says "the customer carries this tag", the one table segments query. It is
# kept in step with ``FollowTag`` by delta, in the same transaction as each friendship change:
# a tag marked on an active friendship links the customer; a tag taken off (or a friendship
# ended) unlinks it unless another active friendship still marks it. Tags Siyu puts on itself
# (``siyu.customers.tagging``) are links too, so a recomputation from ``FollowTag`` alone
# would drop them: nothing here ever rebuilds the table wholesale.
CUSTOMER_TAG_CHUNK = 500


def link_customer_tags(tenant: Any, pairs: Iterable[tuple[int, int]]) -> int:
    """Make the customers carry the tags: ``pairs`` of (customer id, tag id); returns how many
    links were new. Existing links are left as they are (created at is kept)."""
    tenant_id = getattr(tenant, "pk", tenant)
    wanted = sorted(set(pairs))
    if not wanted:
        return 0
    links = CustomerTag.objects.for_tenant(tenant_id)
    created = 0
    for start in range(0, len(wanted), CUSTOMER_TAG_CHUNK):
        chunk = wanted[start : start + CUSTOMER_TAG_CHUNK]
        existing = _existing_links(tenant_id, chunk)
        new = [pair for pair in chunk if pair not in existing]
        links.bulk_create(
            [CustomerTag(tenant_id=tenant_id, customer_id=c, tag_id=t) for c, t in new],
            ignore_conflicts=True,  # a concurrent writer linked one meanwhile: same result
        )
        created += len(new)
    return created


def _existing_links(tenant_id: int, pairs: Sequence[tuple[int, int]]) -> set[tuple[int, int]]:
    customers = {c for c, _t in pairs}
    tags = {t for _c, t in pairs}
    return set(
        CustomerTag.objects.for_tenant(tenant_id)
        .filter(customer_id__in=customers, tag_id__in=tags)
        .values_list("customer_id", "tag_id")
    ) & set(pairs)


def unlink_unmarked_customer_tags(tenant: Any, pairs: Iterable[tuple[int, int]]) -> int:
    """Unlink (customer id, tag id) pairs that no active friendship of the customer marks
    any more; returns how many links went away."""
    tenant_id = getattr(tenant, "pk", tenant)
    candidates = set(pairs)
    if not candidates:
        return 0
    still_marked = set(
        FollowTag.objects.for_tenant(tenant_id)
        .filter(
            follow__customer_id__in={c for c, _t in candidates},
            tag_id__in={t for _c, t in candidates},
            follow__status=Follow.Status.ACTIVE,
        )
        .values_list("follow__customer_id", "tag_id")
    )
    return delete_customer_tag_links(tenant_id, candidates - still_marked)


def delete_customer_tag_links(tenant: Any, pairs: Iterable[tuple[int, int]]) -> int:
    """Delete the CustomerTag rows of these (customer id, tag id) pairs, one statement per
    tag and chunk; returns how many rows went."""
    tenant_id = getattr(tenant, "pk", tenant)
    by_tag: dict[int, list[int]] = {}
    for customer_id, tag_id in set(pairs):
        by_tag.setdefault(tag_id, []).append(customer_id)
    deleted = 0
    links = CustomerTag.objects.for_tenant(tenant_id)
    for tag_id, customer_ids in by_tag.items():
        customer_ids.sort()
        for start in range(0, len(customer_ids), CUSTOMER_TAG_CHUNK):
            chunk = customer_ids[start : start + CUSTOMER_TAG_CHUNK]
            deleted += links.filter(tag_id=tag_id, customer_id__in=chunk).delete()[0]
    return deleted


def drop_tag_links(tenant: Any, tag_ids: Iterable[int]) -> int:
    """Take deleted tags off every friendship and customer (WeCom does the same)."""
    tenant_id = getattr(tenant, "pk", tenant)
    tag_ids = list(set(tag_ids))
    if not tag_ids:
        return 0
    FollowTag.objects.for_tenant(tenant_id).filter(tag_id__in=tag_ids).delete()
    return CustomerTag.objects.for_tenant(tenant_id).filter(tag_id__in=tag_ids).delete()[0]


def link_marked_customer_tags(tenant: Any, *, chunk: int = 5000) -> int:
    """Add the links every active friendship's corp tags imply and that are missing (data
    from before ``CustomerTag`` existed, or repaired by hand); returns how many were added.

    Additive: links Siyu put on itself are never removed here. Walks the customers in id
    ranges so that memory stays bounded on millions of tag links.
    """
    tenant_id = getattr(tenant, "pk", tenant)
    marks = FollowTag.objects.for_tenant(tenant_id).filter(
        follow__status=Follow.Status.ACTIVE, tag__deleted=False
    )
    bounds = marks.aggregate(low=Min("follow__customer_id"), high=Max("follow__customer_id"))
    if bounds["low"] is None:
        return 0
    added = 0
    for start in range(bounds["low"], bounds["high"] + 1, chunk):
        in_range = {"follow__customer_id__gte": start, "follow__customer_id__lt": start + chunk}
        implied = set(marks.filter(**in_range).values_list("follow__customer_id", "tag_id"))
        present = set(
            CustomerTag.objects.for_tenant(tenant_id)
            .filter(customer_id__gte=start, customer_id__lt=start + chunk)
            .values_list("customer_id", "tag_id")
        )
        added += link_customer_tags(tenant_id, implied - present)
    return added


@transaction.atomic
def apply_marked_tags(
    tenant: Any,
    follow: Follow,
    *,
    added: Sequence[Tag] = (),
    removed: Sequence[Tag] = (),
    at: datetime | None = None,
    source: str = "siyu",
) -> TagChange:
    """Record that WeCom accepted Siyu's ``mark_tag`` on this friendship (FollowTag, the
    customer's links and ``follow.tags_changed``), at ``at`` (default now).

    The friendship's WeCom watermark moves to ``at`` (whole seconds, WeCom's resolution), so
    a page of the sync read before WeCom accepted cannot take the tags off again.
    """
    _check_tenant(tenant, follow)
    at = (as_datetime(at, "at") or timezone.now()).replace(microsecond=0)
    follow = (
        Follow.objects.for_tenant(tenant)
        .select_for_update(of=("self",))
        .select_related("customer", "staff")
        .get(pk=follow.pk)
    )
    if not follow.is_active:
        return TagChange()
    links = FollowTag.objects.for_tenant(tenant)
    current = set(links.filter(follow=follow).values_list("tag_id", flat=True))
    to_add = [tag for tag in added if tag.pk not in current and not tag.deleted]
    to_remove = [tag for tag in removed if tag.pk in current]
    change = TagChange(
        added=[tag.wecom_tag_id for tag in to_add],
        removed=sorted(tag.wecom_tag_id for tag in to_remove),
    )
    if to_remove:
        links.filter(follow=follow, tag__in=to_remove).delete()
    if to_add:
        links.bulk_create(
            [FollowTag(tenant_id=follow.tenant_id, follow=follow, tag=tag) for tag in to_add],
            ignore_conflicts=True,
        )
    link_customer_tags(tenant, [(follow.customer_id, tag.pk) for tag in to_add])
    unlink_unmarked_customer_tags(tenant, [(follow.customer_id, tag.pk) for tag in to_remove])
    watermark = newer(follow.wecom_seen_at, at)
    if watermark != follow.wecom_seen_at:
        follow.wecom_seen_at = watermark
        follow.save(update_fields=["wecom_seen_at", "updated_at"])
    if change.changed:
        summary = {"added": change.added, "removed": change.removed}
        record_event(
            follow.tenant_id,
            events.FOLLOW_TAGS_CHANGED,
            key=event_key(
                events.FOLLOW_TAGS_CHANGED,
                follow.customer.external_userid,
                follow.staff.wecom_userid,
                millis(at),
                digest(summary),
            ),
            staff=follow.staff,
            customer_id=follow.customer_id,
            payload={**_follow_ids(follow), **summary, "by_siyu": True},
            source=source,
            occurred_at=at,
        )
    return change
