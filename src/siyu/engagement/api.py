"""API of the staff task inbox (待办): list, create, done, dismiss.

Tasks are found through ``siyu.engagement.selectors.visible_tasks`` (own, direct reports',
data scope), so anything else is a 404. Lists are due-soonest first and keyset-paged on
(due_at, id), stable while tasks are added.
"""

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Literal

from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.responses import Status

from siyu.core.api_errors import error_responses
from siyu.core.api_support import Id, require
from siyu.core.errors import Forbidden, InvalidInput, NotFound
from siyu.engagement import selectors, services
from siyu.engagement.models import StaffTask

router = Router(tags=["tasks"])

READ_ERRORS = error_responses(400, 401, 403, 404, 422)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422)
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class TaskOut(Schema):
    id: int
    staff_id: int = Field(description="The assignee")
    staff_name: str
    kind: Literal["churn", "follow_up", "handover", "send_content", "custom"]
    title: str
    detail: str
    customer_id: int | None
    customer_name: str
    due_at: datetime | None
    status: Literal["open", "done", "dismissed"]
    done_at: datetime | None
    source_key: str = Field(description="What created it, e.g. note:12 or churn_alert:3")
    created_by_id: int | None
    created_at: datetime

    @staticmethod
    def resolve_staff_name(task: StaffTask) -> str:
        return task.staff.name

    @staticmethod
    def resolve_customer_name(task: StaffTask) -> str:
        return str(task.customer) if task.customer_id else ""


class TaskPage(Schema):
    items: list[TaskOut]
    next_cursor: str | None


class TaskFilters(Schema):
    whose: Literal["mine", "reports", "all"] = Field(
        "mine", description="mine; my direct reports'; all I may see"
    )
    status: Literal["open", "done", "dismissed", "any"] = "open"
    customer_id: Id | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=100)


class TaskIn(Schema):
    title: str = Field(min_length=1, max_length=200, examples=["回访上周咨询的客户"])
    kind: Literal["churn", "follow_up", "handover", "send_content", "custom"] = "custom"
    detail: str = Field("", max_length=5000)
    customer_id: Id | None = None
    due_at: datetime | None = None
    staff_id: Id | None = Field(
        None, description="Assignee: yourself (default), a direct report or staff in your scope"
    )


# --- keyset paging on (due_at asc, nulls last; id desc) -------------------------------------------
def _encode(task: StaffTask) -> str:
    due = str(int(task.due_at.timestamp() * 1_000_000)) if task.due_at else "-"
    return base64.urlsafe_b64encode(f"k1:{due}:{task.pk}".encode()).decode().rstrip("=")


def _after(cursor: str) -> Q:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, due, task_id = raw.split(":")
        if prefix != "k1":
            raise ValueError(prefix)
        task_id = int(task_id)
        if due == "-":
            return Q(due_at__isnull=True, id__lt=task_id)
        moment = datetime.fromtimestamp(int(due) / 1_000_000, tz=UTC)
    except (ValueError, binascii.Error, OverflowError, OSError):
        raise InvalidInput(
            _("The cursor is invalid: pass back a next_cursor this API returned"),
            code="invalid_cursor",
            details={"cursor": cursor},
        ) from None
    return Q(due_at__gt=moment) | Q(due_at=moment, id__lt=task_id) | Q(due_at__isnull=True)


def _page(tasks: QuerySet, limit: int, cursor: str | None) -> dict[str, Any]:
    if cursor:
        tasks = tasks.filter(_after(cursor))
    rows = list(tasks[: limit + 1])
    items = rows[:limit]
    return {"items": items, "next_cursor": _encode(items[-1]) if len(rows) > limit else None}


def task_or_404(actor: Any, task_id: int) -> StaffTask:
    task = (
        selectors.visible_tasks(actor)
        .select_related("staff", "customer")
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        raise NotFound(_("Task not found"), details={"id": task_id})
    return task


def _assignee(actor: Any, staff_id: int | None):
    from siyu.tenancy.models import Staff

    if staff_id is None:
        if actor.staff is None:
            raise InvalidInput(
                _("Name the assignee (staff_id): this key acts as no staff member"),
                details={"staff_id": None},
            )
        return actor.staff
    if staff_id == actor.staff_id:
        return actor.staff
    staff = (
        Staff.objects.for_actor(actor).filter(pk=staff_id).first()
        or Staff.objects.for_tenant(actor.tenant_id)
        .filter(pk=staff_id, direct_leader_id=actor.staff_id or 0)
        .first()
    )
    if staff is None:
        raise NotFound(_("Staff not found"), details={"staff_id": staff_id})
    if not staff.is_active:
        raise InvalidInput(_("The assignee has left"), details={"staff_id": staff_id})
    return staff


# --- endpoints
@router.get("/tasks", response={200: TaskPage, **READ_ERRORS}, summary="The task inbox")
def list_tasks(request: HttpRequest, filters: Query[TaskFilters]) -> dict[str, Any]:
    """Due soonest first; tasks without a due date come last."""
    actor = require(request, "tasks:read")
    status = None if filters.status == "any" else filters.status
    tasks = selectors.inbox(actor, whose=filters.whose, status=status)
    if filters.customer_id:
        tasks = tasks.filter(customer_id=filters.customer_id)
    return _page(tasks, filters.limit, filters.cursor)


@router.get("/tasks/{task_id}", response={200: TaskOut, **READ_ERRORS}, summary="One task")
def get_task(request: HttpRequest, task_id: Id) -> StaffTask:
    actor = require(request, "tasks:read")
    return task_or_404(actor, task_id)


@router.post("/tasks", response={201: TaskOut, **WRITE_ERRORS}, summary="Create a task")
def create_task(request: HttpRequest, body: TaskIn) -> Status:
    actor = require(request, "tasks:write")
    if not actor.has_perm("engagement.add_stafftask"):
        raise Forbidden(
            _("Your role does not allow this (needs '%(permission)s')")
            % {"permission": "engagement.add_stafftask"}
        )
    staff = _assignee(actor, body.staff_id)
    customer = None
    if body.customer_id:
        from siyu.customers.views_360 import load_customer

        customer = load_customer(actor, body.customer_id)
    task, _created = services.create_task(
        actor.tenant,
        staff,
        title=body.title,
        kind=body.kind,
        detail=body.detail,
        customer=customer,
        due_at=body.due_at,
        by=actor,
    )
    return Status(201, task_or_404(actor, task.pk))


@router.post(
    "/tasks/{task_id}/done", response={200: TaskOut, **WRITE_ERRORS}, summary="Mark a task done"
)
def done_task(request: HttpRequest, task_id: Id) -> StaffTask:
    actor = require(request, "tasks:write")
    services.complete_task(actor, task_or_404(actor, task_id))
    return task_or_404(actor, task_id)


@router.post(
    "/tasks/{task_id}/dismiss",
    response={200: TaskOut, **WRITE_ERRORS},
    summary="Dismiss a task (no longer relevant)",
)
def dismiss_task(request: HttpRequest, task_id: Id) -> StaffTask:
    actor = require(request, "tasks:write")
    services.dismiss_task(actor, task_or_404(actor, task_id))
    return task_or_404(actor, task_id)
