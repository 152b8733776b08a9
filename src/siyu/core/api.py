"""API of the event log: read the tenant's facts, record external ones idempotently."""

from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status
from pydantic import AwareDatetime

from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.core.errors import Conflict, InvalidInput, NotFound
from siyu.core.events import EVENT_TYPE_MAX_LENGTH, IDEMPOTENCY_KEY_MAX_LENGTH, record_event
from siyu.core.models import Event
from siyu.tenancy.actor import Actor
from siyu.tenancy.models import Staff

router = Router(tags=["events"])

# Keys sent through the API are stored under their own prefix, so a client can never take
# the key an internal writer will use (e.g. ``staff.departed:7``) and silently swallow that
# fact.
API_KEY_NAMESPACE = "api:"
# Facts that only the platform's own services may record: their handlers act on them.
RESERVED_TYPE_PREFIXES = (
    "tenant.",
    "staff.",
    "department.",
    "role.",
    "apikey.",
    "user.",
    "customer.",
    "follow.",
    "tag.",
    "group.",
)
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"


class EventOut(Schema):
    id: int
    type: str = Field(examples=["order.paid"])
    occurred_at: datetime = Field(description="When the fact happened")
    recorded_at: datetime = Field(description="When Siyu recorded it")
    staff_id: int | None = Field(description="Staff the fact is about, if any")
    customer_id: int | None
    group_id: int | None
    payload: dict[str, Any] = Field(examples=[{"order_no": "A1001", "amount_fen": 9900}])
    source: str = Field(description="Who recorded it: system, console, api, cli, wecom, …")
    idempotency_key: str = Field(
        description="Unique per tenant; keys sent through the API are stored as 'api:<key>'",
        examples=["api:order:A1001:paid"],
    )


class EventFilters(Schema):
    type: str | None = Field(None, max_length=EVENT_TYPE_MAX_LENGTH, description="Exact type")
    type_prefix: str | None = Field(
        None,
        max_length=EVENT_TYPE_MAX_LENGTH,
        description="Types starting with this, e.g. 'order.'",
    )
    staff_id: Id | None = Field(None, description="Facts about this staff member")
    customer_id: Id | None = Field(None, description="Facts about this customer")
    since: AwareDatetime | None = Field(
        None, description="occurred_at at or after this time (ISO 8601 with offset)"
    )
    until: AwareDatetime | None = Field(
        None, description="occurred_at before this time (ISO 8601 with offset)"
    )


class EventIn(Schema):
    type: str = Field(
        min_length=1,
        max_length=EVENT_TYPE_MAX_LENGTH,
        pattern=EVENT_TYPE_PATTERN,
        description="Dotted name of the fact, e.g. 'order.paid'; platform types are reserved",
        examples=["order.paid"],
    )
    idempotency_key: str = Field(
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH - len(API_KEY_NAMESPACE),
        description=(
            "Required. Sending the same key again returns the first event (200) instead of "
            "recording a second one (201)"
        ),
        examples=["order:A1001:paid"],
    )
    occurred_at: AwareDatetime | None = Field(
        None, description="When it happened (ISO 8601 with offset); default: now"
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, examples=[{"order_no": "A1001", "amount_fen": 9900}]
    )
    staff_id: Id | None = Field(None, description="Staff of this tenant the fact is about")
    customer_id: Id | None = Field(None, description="Customer the fact is about")
    group_id: Id | None = Field(None, description="Customer group the fact is about")


def event_or_404(actor: Actor, event_id: int) -> Event:
    event = Event.objects.for_actor(actor).filter(pk=event_id).first()
    if event is None:
        raise NotFound(_("Event not found"), details={"id": event_id})
    return event


def staff_or_404(actor: Actor, staff_id: int | None) -> Staff | None:
    """Facts may only name staff the caller can see (never another tenant's)."""
    if staff_id is None:
        return None
    staff = Staff.objects.for_actor(actor).filter(pk=staff_id).first()
    if staff is None:
        raise NotFound(_("Staff not found"), details={"staff_id": staff_id})
    return staff


@router.get(
    "/events",
    response={200: list[EventOut], **error_responses(400, 401, 403, 422)},
    summary="List events",
)
@paginate(CursorPagination)
def list_events(request: HttpRequest, filters: Query[EventFilters]) -> QuerySet:
    """Events within the caller's data scope, newest first."""
    actor = require(request, "events:read")
    events = Event.objects.for_actor(actor)
    if filters.type:
        events = events.filter(type=filters.type)
    if filters.type_prefix:
        events = events.filter(type__startswith=filters.type_prefix)
    if filters.staff_id:
        events = events.filter(staff_id=filters.staff_id)
    if filters.customer_id:
        events = events.filter(customer_id=filters.customer_id)
    if filters.since:
        events = events.filter(occurred_at__gte=filters.since)
    if filters.until:
        events = events.filter(occurred_at__lt=filters.until)
    return events


@router.get(
    "/events/{event_id}",
    response={200: EventOut, **error_responses(401, 403, 404, 422)},
    summary="Get one event",
)
def get_event(request: HttpRequest, event_id: Id) -> Event:
    actor = require(request, "events:read")
    return event_or_404(actor, event_id)


@router.post(
    "/events",
    response={200: EventOut, 201: EventOut, **error_responses(400, 401, 403, 404, 409, 422)},
    summary="Record an external fact",
)
def create_event(request: HttpRequest, body: EventIn, response: HttpResponse) -> Status:
    """Record a fact from outside (a shop order, a form, …); safe to retry.

    201 with the new event; 200 with the first event when the idempotency key was already
    used (then the header ``Idempotent-Replayed: true`` is set and nothing is recorded).
    """
    actor = require(request, "events:write")
    if body.type.startswith(RESERVED_TYPE_PREFIXES):
        raise InvalidInput(
            _("Event types starting with %(prefixes)s are reserved for the platform")
            % {"prefixes": ", ".join(RESERVED_TYPE_PREFIXES)},
            code="reserved_event_type",
            details={"type": body.type},
        )
    event, created = record_event(
        actor.tenant,
        body.type,
        key=f"{API_KEY_NAMESPACE}{body.idempotency_key}",
        staff=staff_or_404(actor, body.staff_id),
        customer_id=body.customer_id,
        group_id=body.group_id,
        payload=body.payload,
        source="api",
        # In UTC, as read back from the database: the 201 and a later GET look the same.
        occurred_at=body.occurred_at.astimezone(UTC) if body.occurred_at else None,
    )
    if created:
        return Status(201, event)
    if not Event.objects.for_actor(actor).filter(pk=event.pk).exists():
        # The key was used for a fact outside the caller's data scope: do not show it.
        raise Conflict(
            _("This idempotency key has already been used"),
            details={"idempotency_key": body.idempotency_key},
        )
    response["Idempotent-Replayed"] = "true"
    return Status(200, event)
