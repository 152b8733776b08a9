"""API of retention work: churn alerts, staff hand-overs, duplicate customers and merges.

Handlers stay thin: check the API scope, call ``siyu.customers.churn`` / ``handover`` /
``merge``, return the schema. Rows are found through the caller's data scope (a sales key
sees the alerts and hand-overs of its own friendships), so another tenant's or another
owner's row is a 404. Writes also need the role's permission (checked by the services):
``customers.change_churnalert``, ``customers.handover_customer``, ``customers.merge_customer``.
"""

from datetime import date, datetime, time, timedelta
from typing import Literal

from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id, require
from siyu.customers import churn, handover, merge
from siyu.customers.models import ChurnAlert, Handover, HandoverItem

router = Router(tags=["retention"])

READ_ERRORS = error_responses(400, 401, 403, 404, 422)
LIST_ERRORS = error_responses(400, 401, 403, 422)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 502)

AlertKind = Literal["by_customer", "by_staff"]
AlertStatus = Literal["open", "contacted", "recovered", "closed"]
ItemStatus = Literal["queued", "waiting", "succeeded", "refused", "limit", "failed"]


# --- schemas ----------------------------------------------------------------------------
class StaffBrief(Schema):
    id: int
    wecom_userid: str
    name: str


class CustomerBrief(Schema):
    id: int
    external_userid: str
    name: str
    unionid: str
    owner_id: int | None
    first_added_at: datetime | None


class ChurnAlertOut(Schema):
    id: int
    customer: CustomerBrief
    staff: StaffBrief = Field(description="The staff whose friendship ended")
    kind: AlertKind = Field(
        description="by_customer: the customer deleted the staff (win-back tasks); "
        "by_staff: the staff deleted the customer"
    )
    status: AlertStatus
    occurred_at: datetime = Field(description="When the friendship ended")
    source_state: str = Field(description="state of the contact way the friendship came from")
    tenure_days: int = Field(description="How long they were friends")
    last_interaction_at: datetime | None
    value_fen: int = Field(description="Paid minus refunded, in fen (分)")
    other_follows: int = Field(description="Other staff still friends; 0: the brand lost them")
    resolved_at: datetime | None


class ChurnAlertFilters(Schema):
    kind: AlertKind | None = None
    status: AlertStatus | None = None
    staff_id: Id | None = Field(None, description="Only alerts of this staff")
    since: date | None = Field(None, description="Ended on or after this day")
    until: date | None = Field(None, description="Ended on or before this day")


class AlertStatusIn(Schema):
    status: Literal["contacted", "recovered", "closed"]


class HandoverItemOut(Schema):
    id: int
    customer: CustomerBrief
    status: ItemStatus = Field(
        description="waiting: WeCom accepted, the customer may refuse within 24 h; "
        "succeeded / refused / limit (takeover staff full) / failed: final"
    )
    errcode: int | None = Field(description="WeCom's errcode for this customer (0: accepted)")
    detail: str
    takeover_at: datetime | None


class HandoverOut(Schema):
    id: int
    kind: Literal["in_service", "resigned"]
    status: Literal["pending", "submitted", "finished", "failed"]
    from_staff: StaffBrief
    to_staff: StaffBrief
    message: str
    reason: str
    created_by_id: int | None
    created_at: datetime
    finished_at: datetime | None
    counts: dict[str, int] = Field(description="Customers per item status, and total")

    @staticmethod
    def resolve_counts(row: Handover) -> dict[str, int]:
        names = ["total", *HandoverItem.Status.values]
        return {name: getattr(row, f"count_{name}", 0) for name in names}


class HandoverDetailOut(HandoverOut):
    items: list[HandoverItemOut]

    @staticmethod
    def resolve_items(row: Handover) -> list[HandoverItem]:
        return list(handover.items_of(row))


class HandoverIn(Schema):
    from_staff_id: Id
    to_staff_id: Id
    customer_ids: list[Id] | None = Field(None, max_length=10_000)
    all_customers: bool = Field(False, description="Every customer of from_staff instead")
    message: str = Field(
        "", max_length=200, description="To the customers (in-service transfers only)"
    )
    reason: str = Field("", max_length=200, description="Why, for the history")


class HandoverFilters(Schema):
    status: Literal["pending", "submitted", "finished", "failed"] | None = None
    kind: Literal["in_service", "resigned"] | None = None
    from_staff_id: Id | None = None


class DuplicateGroupOut(Schema):
    reason: Literal["unionid", "phone"]
    suggested_survivor_id: int
    customers: list[CustomerBrief]


class DuplicateFilters(Schema):
    limit: int = Field(100, ge=1, le=500, description="At most this many groups")


class MergeIn(Schema):
    survivor_id: Id = Field(description="The customer kept")
    duplicate_id: Id = Field(description="The customer folded into it")


class MergeOut(Schema):
    id: int
    survivor_id: int
    merged_customer_id: int
    merged_external_userid: str
    reason: Literal["unionid", "phone", "manual"]
    merged_by_id: int | None
    created_at: datetime


# --- churn alerts -----------------------------------------------------------------------
def _alerts(actor) -> QuerySet:
    return churn.visible_alerts(actor).select_related("customer", "staff")


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@router.get(
    "/churn-alerts", response={200: list[ChurnAlertOut], **LIST_ERRORS}, summary="List churn alerts"
)
@paginate(CursorPagination)
def list_churn_alerts(request: HttpRequest, filters: Query[ChurnAlertFilters]) -> QuerySet:
    """Ended friendships within the caller's data scope, newest first."""
    actor = require(request, "customers:read")
    alerts = _alerts(actor)
    if filters.kind:
        alerts = alerts.filter(kind=filters.kind)
    if filters.status:
        alerts = alerts.filter(status=filters.status)
    if filters.staff_id:
        alerts = alerts.filter(staff_id=filters.staff_id)
    if filters.since:
        alerts = alerts.filter(occurred_at__gte=_day_start(filters.since))
    if filters.until:
        alerts = alerts.filter(occurred_at__lt=_day_start(filters.until) + timedelta(days=1))
    return alerts


@router.get(
    "/churn-alerts/{alert_id}",
    response={200: ChurnAlertOut, **READ_ERRORS},
    summary="Get one churn alert",
)
def get_churn_alert(request: HttpRequest, alert_id: Id) -> ChurnAlert:
    return churn.alert_for(require(request, "customers:read"), alert_id)


@router.post(
    "/churn-alerts/{alert_id}/status",
    response={200: ChurnAlertOut, **WRITE_ERRORS},
    summary="Mark a churn alert contacted, recovered or closed",
)
def change_churn_alert_status(
    request: HttpRequest, alert_id: Id, body: AlertStatusIn
) -> ChurnAlert:
    """Its win-back tasks follow (done; dismissed when closed). 409 for a finished alert."""
    actor = require(request, "customers:write")
    churn.set_alert_status(actor, alert_id, body.status)
    return churn.alert_for(actor, alert_id)


# --- hand-overs -------------------------------------------------------------------------
@router.get(
    "/handovers", response={200: list[HandoverOut], **LIST_ERRORS}, summary="List hand-overs"
)
@paginate(CursorPagination)
def list_handovers(request: HttpRequest, filters: Query[HandoverFilters]) -> QuerySet:
    actor = require(request, "customers:read")
    rows = handover.visible_handovers(actor)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.kind:
        rows = rows.filter(kind=filters.kind)
    if filters.from_staff_id:
        rows = rows.filter(from_staff_id=filters.from_staff_id)
    return rows


@router.get(
    "/handovers/{handover_id}",
    response={200: HandoverDetailOut, **READ_ERRORS},
    summary="Get a hand-over with each customer's result",
)
def get_handover(request: HttpRequest, handover_id: Id) -> Handover:
    return handover.handover_for(require(request, "customers:read"), handover_id)


@router.post(
    "/handovers",
    response={201: HandoverDetailOut, **WRITE_ERRORS},
    summary="Hand customers over to another staff",
)
def create_handover(request: HttpRequest, body: HandoverIn) -> Status:
    """In-service transfer (在职转接) for an employed staff, resigned transfer (离职继承) for a
    departed one. Submitted to WeCom in the background, 100 customers per call; follow the
    results on ``GET /handovers/{id}``."""
    actor = require(request, "customers:write")
    row = handover.start_handover(
        actor,
        from_staff=body.from_staff_id,
        to_staff=body.to_staff_id,
        customers=body.customer_ids,
        all_customers=body.all_customers,
        message=body.message,
        reason=body.reason,
    )
    return Status(201, handover.handover_for(actor, row.pk))


@router.post(
    "/handovers/{handover_id}/refresh",
    response={200: HandoverDetailOut, **WRITE_ERRORS},
    summary="Ask WeCom for the results now",
)
def refresh_handover(request: HttpRequest, handover_id: Id) -> Handover:
    """The results are polled every 10 minutes anyway; this asks at once."""
    actor = require(request, "customers:write")
    row = handover.handover_for(actor, handover_id)
    handover.require_handover_right(actor)
    handover.refresh_handover(row)
    return handover.handover_for(actor, row.pk)


# --- duplicates and merges --------------------------------------------------------------
@router.get(
    "/customer-duplicates",
    response={200: list[DuplicateGroupOut], **LIST_ERRORS},
    summary="Customers that look like one person",
)
def list_duplicates(request: HttpRequest, filters: Query[DuplicateFilters]) -> list[dict]:
    """Groups of live customers sharing a unionid or a verified phone, within your scope."""
    actor = require(request, "customers:read")
    return [
        {
            "reason": group.reason,
            "suggested_survivor_id": group.suggested_survivor.pk,
            "customers": group.customers,
        }
        for group in merge.duplicate_groups(actor, limit=filters.limit)
    ]


@router.get(
    "/customer-merges", response={200: list[MergeOut], **LIST_ERRORS}, summary="Merge history"
)
@paginate(CursorPagination)
def list_merges(request: HttpRequest) -> QuerySet:
    return merge.merges_for(require(request, "customers:read"))


@router.post(
    "/customer-merges",
    response={201: MergeOut, **WRITE_ERRORS},
    summary="Merge a duplicate customer into another",
)
def create_merge(request: HttpRequest, body: MergeIn) -> Status:
    """Moves friendships, tags, notes, tasks, alerts, hand-overs, segment and group
    memberships and missing profile fields to the survivor; keeps a snapshot of the
    duplicate. Needs the ``customers.merge_customer`` permission."""
    actor = require(request, "customers:write")
    record = merge.merge_customers(actor, body.survivor_id, body.duplicate_id)
    return Status(201, record)
