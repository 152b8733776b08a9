"""API of the customer 360: profile, custom fields, notes and follow-ups, timeline, stage.

Handlers stay thin: check the API scope, find the customer through the caller's data scope
(another tenant's or another owner's customer is a 404, like a missing one), call
``siyu.customers.profiles`` / ``lifecycle`` / ``timeline``, return the schema. Phones are
masked unless the caller's role holds ``customers.view_customer_phone``.
"""

from datetime import date, datetime
from typing import Any, Literal

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.customers import lifecycle, profiles, timeline, views_360
from siyu.customers.api import FollowOut, TagOut
from siyu.customers.models import CustomerNote, CustomField

router = Router(tags=["customer 360"])

READ_ERRORS = error_responses(400, 401, 403, 404, 422)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422)

Kind = Literal["note", "call", "chat", "visit", "meeting", "other"]
FieldType = Literal["text", "number", "date", "choice", "multi_choice"]


# --- schemas ----------------------------------------------------------------------------
class ProfileOut(Schema):
    display_name: str = Field(description="The brand's name for the customer (empty: none)")
    birthday: date | None
    age_band: str = Field(description="lt18, 18-24, 25-34, 35-44, 45-54, 55+ or empty")
    province: str
    city: str
    interests: list[str]
    phone: str = Field(description="Masked (138****1234) unless your role may see phones")
    phone_verified: bool


class ProfilePatch(Schema):
    """Only the fields sent change; null or "" clears one."""

    display_name: str | None = Field(None, max_length=64, examples=["王女士"])
    birthday: date | None = Field(None, examples=["1990-05-20"])
    age_band: Literal["", "lt18", "18-24", "25-34", "35-44", "45-54", "55+"] | None = None
    province: str | None = Field(None, max_length=32, examples=["浙江"])
    city: str | None = Field(None, max_length=32, examples=["杭州"])
    interests: list[str] | None = Field(None, max_length=30, examples=[["咖啡", "烘焙"]])
    phone: str | None = Field(
        None,
        max_length=40,
        description="Mainland mobile (+86 optional) or E.164; needs the phone permission",
        examples=["+86 138 1234 5678"],
    )
    phone_verified: bool | None = None


class CustomFieldOut(Schema):
    id: int
    key: str = Field(examples=["skin_type"])
    label: str = Field(examples=["肤质"])
    type: FieldType
    choices: list[str]
    help_text: str
    order: int
    is_active: bool


class CustomFieldIn(Schema):
    key: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Lower-case letters, digits, _; used in rules, imports and the API",
        examples=["skin_type"],
    )
    label: str = Field(min_length=1, max_length=60, examples=["肤质"])
    type: FieldType = "text"
    choices: list[str] = Field(default_factory=list, max_length=100, examples=[["干性", "油性"]])
    help_text: str = Field("", max_length=200)
    order: int = Field(0, ge=0, le=100000)


class CustomFieldPatch(Schema):
    label: str | None = Field(None, min_length=1, max_length=60)
    type: FieldType | None = Field(None, description="Only while no customer has a value")
    choices: list[str] | None = Field(None, max_length=100)
    help_text: str | None = Field(None, max_length=200)
    order: int | None = Field(None, ge=0, le=100000)
    is_active: bool | None = None


class CustomValuesIn(Schema):
    values: dict[str, Any] = Field(
        description="{key: value}; null or empty clears. number: a number; date: YYYY-MM-DD; "
        "choice: one of the choices; multi_choice: a list of choices",
        examples=[{"skin_type": "油性", "card_no": 1024}],
    )


class NoteOut(Schema):
    id: int
    customer_id: int
    author_id: int | None
    author_name: str
    kind: Kind
    content: str
    happened_at: datetime
    next_contact_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_author_name(note: CustomerNote) -> str:
        return note.author.name if note.author_id and note.author else ""


class NoteIn(Schema):
    kind: Kind = "note"
    content: str = Field(min_length=1, max_length=5000, examples=["电话回访，对新品感兴趣"])
    happened_at: datetime | None = Field(None, description="Default: now")
    next_contact_at: datetime | None = Field(
        None, description="Creates a follow-up task due then (for the owner, else the author)"
    )


class NotePatch(Schema):
    kind: Kind | None = None
    content: str | None = Field(None, min_length=1, max_length=5000)
    happened_at: datetime | None = None
    next_contact_at: datetime | None = Field(None, description="null clears it (and its task)")


class TimelineEntryOut(Schema):
    id: int
    type: str = Field(examples=["customer.added"])
    occurred_at: datetime
    text: str = Field(description="One readable line, in the request's language")
    staff_id: int | None
    staff_name: str
    source: str
    customer_id: int = Field(description="Differs from the customer's id for merged records")
    merged: bool
    payload: dict[str, Any]


class TimelineOut(Schema):
    items: list[TimelineEntryOut]
    next_cursor: str | None


class TimelineFilters(Schema):
    limit: int = Field(timeline.PAGE_SIZE, ge=1, le=timeline.MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=100)
    type: list[str] | None = Field(None, description="Only these event types")


class GroupOut(Schema):
    group_id: int
    name: str
    joined_at: datetime | None
    member_count: int


class TaskBrief(Schema):
    id: int
    title: str
    kind: str
    staff_id: int
    due_at: datetime | None


class LifecycleOut(Schema):
    stage: Literal["new", "active", "silent", "at_risk", "churned"]
    stage_label: str
    changed_at: datetime | None
    last_interaction_at: datetime | None


class Customer360Out(Schema):
    id: int
    external_userid: str
    unionid: str
    name: str
    display_name: str
    avatar: str
    type: int
    gender: int
    corp_name: str
    position: str
    status: Literal["active", "lost"]
    owner_id: int | None
    first_added_at: datetime | None
    source_state: str = Field(description="state of the first add (the acquisition channel)")
    profile: ProfileOut
    custom_fields: dict[str, Any] = Field(description="Values of the active custom fields")
    lifecycle: LifecycleOut
    follows: list[FollowOut]
    tags: list[TagOut]
    groups: list[GroupOut]
    open_tasks: list[TaskBrief]
    notes: list[NoteOut] = Field(description="The newest notes and follow-ups")
    timeline: TimelineOut = Field(description="The first page of the timeline")
    merged_customer_ids: list[int]


class PolicyOut(Schema):
    new_days: int
    silent_after_days: int
    at_risk_after_days: int
    churned_after_days: int
    interaction_types: list[str] = Field(description="Empty: the built-in list")
    default_interaction_types: list[str]

    @staticmethod
    def resolve_default_interaction_types(policy) -> list[str]:
        return list(lifecycle.DEFAULT_INTERACTION_TYPES)


class PolicyPatch(Schema):
    new_days: int | None = Field(None, ge=0, le=3650)
    silent_after_days: int | None = Field(None, ge=1, le=3650)
    at_risk_after_days: int | None = Field(None, ge=1, le=3650)
    churned_after_days: int | None = Field(None, ge=1, le=3650)
    interaction_types: list[str] | None = Field(None, max_length=100)


# --- helpers ----------------------------------------------------------------------------
def _profile(actor, customer) -> dict[str, Any]:
    return {
        "display_name": (customer.custom or {}).get(profiles.DISPLAY_NAME_KEY, ""),
        "birthday": customer.birthday,
        "age_band": customer.age_band,
        "province": customer.province,
        "city": customer.city,
        "interests": list(customer.interests or []),
        "phone": profiles.shown_phone(actor, customer),
        "phone_verified": customer.phone_verified,
    }


def _timeline_out(page: timeline.TimelinePage) -> dict[str, Any]:
    return {"items": page.entries, "next_cursor": page.next_cursor}


def _sent(body: Schema) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.model_fields_set}


# --- the 360 ------------------------------------------------------------------------------
@router.get(
    "/customers/{customer_id}/360",
    response={200: Customer360Out, **READ_ERRORS},
    summary="A customer's 360: profile, custom fields, friendships, tags, groups, stage, notes",
)
def get_customer_360(request: HttpRequest, customer_id: Id) -> dict[str, Any]:
    actor = require(request, "customers:read")
    customer = views_360.load_customer(actor, customer_id)
    view = views_360.build_360(actor, customer)
    return {
        **{
            name: getattr(customer, name)
            for name in (
                "id",
                "external_userid",
                "unionid",
                "name",
                "avatar",
                "type",
                "gender",
                "corp_name",
                "position",
                "status",
                "owner_id",
                "first_added_at",
                "source_state",
            )
        },
        "display_name": view.display_name,
        "profile": _profile(actor, customer),
        "custom_fields": {item.field.key: item.value for item in view.custom_values},
        "lifecycle": {
            "stage": view.stage,
            "stage_label": view.stage_label,
            "changed_at": customer.lifecycle_changed_at,
            "last_interaction_at": customer.last_interaction_at,
        },
        "follows": view.follows,
        "tags": view.tags,
        "groups": view.groups,
        "open_tasks": view.tasks,
        "notes": view.notes,
        "timeline": _timeline_out(view.timeline),
        "merged_customer_ids": view.merged_ids,
    }


@router.patch(
    "/customers/{customer_id}/profile",
    response={200: ProfileOut, **WRITE_ERRORS},
    summary="Update a customer's profile attributes",
)
def patch_profile(request: HttpRequest, customer_id: Id, body: ProfilePatch) -> dict[str, Any]:
    """Records ``customer.profile_updated``. Sending ``phone`` needs the phone permission."""
    actor = require(request, "customers:write")
    customer = views_360.load_customer(actor, customer_id)
    values = _sent(body)
    if ("phone" in values or "phone_verified" in values) and not profiles.may_see_phone(actor):
        from django.utils.translation import gettext as _

        from siyu.core.errors import Forbidden

        raise Forbidden(
            _("Your role may not see or change phone numbers"),
            details={"required_permission": "customers.view_customer_phone"},
        )
    customer = profiles.update_profile(actor, customer, **values)
    return _profile(actor, customer)


@router.patch(
    "/customers/{customer_id}/custom-fields",
    response={200: dict[str, Any], **WRITE_ERRORS},
    summary="Set custom-field values on a customer",
)
def patch_custom_values(
    request: HttpRequest, customer_id: Id, body: CustomValuesIn
) -> dict[str, Any]:
    """Returns every stored custom value; one bad value refuses them all (400)."""
    actor = require(request, "customers:write")
    customer = views_360.load_customer(actor, customer_id)
    customer = profiles.set_custom_values(actor, customer, body.values)
    return {k: v for k, v in (customer.custom or {}).items() if not k.startswith("_")}


# --- custom field definitions -------------------------------------------------------------
@router.get(
    "/custom-fields",
    response={200: list[CustomFieldOut], **READ_ERRORS},
    summary="The tenant's custom fields",
    tags=["custom fields"],
)
def list_custom_fields(request: HttpRequest, include_inactive: bool = False) -> list[CustomField]:
    actor = require(request, "customers:read")
    return profiles.custom_fields(actor.tenant, active_only=not include_inactive)


@router.post(
    "/custom-fields",
    response={201: CustomFieldOut, **WRITE_ERRORS},
    summary="Define a custom field",
    tags=["custom fields"],
)
def create_custom_field(request: HttpRequest, body: CustomFieldIn) -> Status:
    actor = require(request, "customers:write")
    field = profiles.create_custom_field(actor, **body.model_dump())
    return Status(201, field)


@router.get(
    "/custom-fields/{field_id}",
    response={200: CustomFieldOut, **READ_ERRORS},
    summary="One custom field",
    tags=["custom fields"],
)
def get_custom_field(request: HttpRequest, field_id: Id) -> CustomField:
    actor = require(request, "customers:read")
    return profiles.custom_field_or_404(actor, field_id)


@router.patch(
    "/custom-fields/{field_id}",
    response={200: CustomFieldOut, **WRITE_ERRORS},
    summary="Change a custom field (label, choices, order, active; type while unused)",
    tags=["custom fields"],
)
def patch_custom_field(request: HttpRequest, field_id: Id, body: CustomFieldPatch) -> CustomField:
    actor = require(request, "customers:write")
    values = {name: value for name, value in _sent(body).items() if value is not None}
    return profiles.update_custom_field(actor, field_id, **values)


@router.delete(
    "/custom-fields/{field_id}",
    response={200: CustomFieldOut, **WRITE_ERRORS},
    summary="Deactivate a custom field (its values are kept)",
    tags=["custom fields"],
)
def delete_custom_field(request: HttpRequest, field_id: Id) -> CustomField:
    actor = require(request, "customers:write")
    return profiles.deactivate_custom_field(actor, field_id)


# --- notes ----------------------------------------------------------------------------------
@router.get(
    "/customers/{customer_id}/notes",
    response={200: list[NoteOut], **READ_ERRORS},
    summary="A customer's notes and follow-ups, newest first",
    tags=["notes"],
)
@paginate(CursorPagination)
def list_notes(request: HttpRequest, customer_id: Id) -> QuerySet:
    actor = require(request, "customers:read")
    customer = views_360.load_customer(actor, customer_id)
    return profiles.visible_notes(actor, customer)


@router.post(
    "/customers/{customer_id}/notes",
    response={201: NoteOut, **WRITE_ERRORS},
    summary="Add a note or a follow-up (a next contact becomes a task)",
    tags=["notes"],
)
def create_note(request: HttpRequest, customer_id: Id, body: NoteIn) -> Status:
    actor = require(request, "customers:write")
    customer = views_360.load_customer(actor, customer_id)
    note = profiles.add_note(actor, customer, **body.model_dump())
    return Status(201, profiles.note_or_404(actor, note.pk))


@router.patch(
    "/customers/{customer_id}/notes/{note_id}",
    response={200: NoteOut, **WRITE_ERRORS},
    summary="Edit a note (its author or a manager)",
    tags=["notes"],
)
def patch_note(request: HttpRequest, customer_id: Id, note_id: Id, body: NotePatch) -> Any:
    actor = require(request, "customers:write")
    customer = views_360.load_customer(actor, customer_id)
    note = profiles.note_or_404(actor, note_id, customer_id=customer.pk)
    values = _sent(body)
    for name in ("kind", "content", "happened_at"):
        if name in values and values[name] is None:
            values.pop(name)
    profiles.update_note(actor, note, **values)
    return profiles.note_or_404(actor, note.pk)


@router.delete(
    "/customers/{customer_id}/notes/{note_id}",
    response={204: None, **WRITE_ERRORS},
    summary="Delete a note (its author or a manager)",
    tags=["notes"],
)
def delete_note(request: HttpRequest, customer_id: Id, note_id: Id) -> Status:
    actor = require(request, "customers:write")
    customer = views_360.load_customer(actor, customer_id)
    profiles.delete_note(actor, profiles.note_or_404(actor, note_id, customer_id=customer.pk))
    return Status(204, None)


# --- timeline -------------------------------------------------------------------------------
@router.get(
    "/customers/{customer_id}/timeline",
    response={200: TimelineOut, **READ_ERRORS},
    summary="A customer's timeline (incl. merged records), newest first",
)
def get_timeline(
    request: HttpRequest, customer_id: Id, filters: Query[TimelineFilters]
) -> dict[str, Any]:
    actor = require(request, "customers:read")
    customer = views_360.load_customer(actor, customer_id)
    page = timeline.timeline(
        customer, limit=filters.limit, cursor=filters.cursor, types=filters.type
    )
    return _timeline_out(page)


# --- lifecycle rules --------------------------------------------------------------------------
@router.get(
    "/lifecycle-policy",
    response={200: PolicyOut, **READ_ERRORS},
    summary="The tenant's lifecycle rules",
    tags=["lifecycle"],
)
def get_policy(request: HttpRequest) -> Any:
    actor = require(request, "customers:read")
    return lifecycle.policy_for(actor.tenant)


@router.patch(
    "/lifecycle-policy",
    response={200: PolicyOut, **WRITE_ERRORS},
    summary="Change the lifecycle rules (stages are recomputed in the background)",
    tags=["lifecycle"],
)
def patch_policy(request: HttpRequest, body: PolicyPatch) -> Any:
    actor = require(request, "customers:write")
    values = {name: value for name, value in _sent(body).items() if value is not None}
    return lifecycle.update_policy(actor, **values)
