"""The only writers of the staff task inbox (待办).

Other domains create tasks through ``create_task`` with a ``source_key`` naming what caused
it ("churn_alert:12"): the same source never makes the same staff two tasks, so a retried
handler or a redelivered event is harmless.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.core.errors import Conflict, Forbidden, InvalidInput
from siyu.core.events import record_event
from siyu.engagement.models import StaffTask

TITLE_MAX = 200


def create_task(
    tenant: Any,
    staff: Any,
    *,
    title: str,
    kind: str = StaffTask.Kind.CUSTOM,
    detail: str = "",
    customer: Any = None,
    due_at: datetime | None = None,
    source_key: str = "",
    by: Any = None,
) -> tuple[StaffTask, bool]:
    """Give ``staff`` a task; ``(task, created)``. With a ``source_key`` it is idempotent."""
    title = (title or "").strip()
    if not title:
        raise InvalidInput(_("A task needs a title."))
    if kind not in StaffTask.Kind.values:
        raise InvalidInput(_("Unknown kind of task: %(kind)s") % {"kind": kind})
    if staff.tenant_id != getattr(tenant, "pk", tenant):
        raise Forbidden(_("The assignee belongs to another brand."))
    scoped = StaffTask.objects.for_tenant(tenant)
    if source_key:
        existing = scoped.filter(staff=staff, source_key=source_key).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            task = scoped.create(
                tenant_id=staff.tenant_id,
                staff=staff,
                kind=kind,
                title=title[:TITLE_MAX],
                detail=detail,
                customer=customer,
                due_at=due_at,
                source_key=source_key,
                created_by=getattr(by, "staff", None),
            )
            record_event(
                staff.tenant_id,
                "task.created",
                key=f"task.created:{task.pk}",
                staff=staff,
                customer_id=getattr(customer, "pk", None),
                payload={"task_id": task.pk, "kind": kind, "source": source_key},
            )
    except IntegrityError:
        # Someone created the same sourced task concurrently: theirs is the task.
        return scoped.get(staff=staff, source_key=source_key), False
    return task, True


def _transition(actor: Any, task: StaffTask, status: str, event_type: str) -> StaffTask:
    if actor.staff_id != task.staff_id and not actor.has_perm("engagement.change_stafftask"):
        raise Forbidden(_("Only the assignee or a manager may change this task."))
    with transaction.atomic():
        updated = (
            StaffTask.objects.for_tenant(actor.tenant)
            .filter(pk=task.pk, status=StaffTask.Status.OPEN)
            .update(status=status, done_at=timezone.now())
        )
        if not updated:
            raise Conflict(_("This task is no longer open."))
        task.refresh_from_db()
        record_event(
            actor.tenant,
            event_type,
            key=f"{event_type}:{task.pk}",
            staff=task.staff,
            customer_id=task.customer_id,
            payload={"task_id": task.pk, "kind": task.kind, "by": actor.staff_id},
        )
    return task


def complete_task(actor: Any, task: StaffTask) -> StaffTask:
    """Mark an open task done."""
    return _transition(actor, task, StaffTask.Status.DONE, "task.done")


def dismiss_task(actor: Any, task: StaffTask) -> StaffTask:
    """Close an open task without doing it (no longer relevant)."""
    return _transition(actor, task, StaffTask.Status.DISMISSED, "task.dismissed")


def reschedule_task(task: StaffTask, *, due_at: datetime | None) -> StaffTask:
    """Move an open task's due time (e.g. a follow-up's next contact was changed)."""
    with transaction.atomic():
        updated = (
            StaffTask.objects.for_tenant(task.tenant_id)
            .filter(pk=task.pk, status=StaffTask.Status.OPEN)
            .update(due_at=due_at)
        )
        if not updated:
            raise Conflict(_("This task is no longer open."))
        task.due_at = due_at
        record_event(
            task.tenant_id,
            "task.rescheduled",
            key=f"task.rescheduled:{task.pk}:{int(timezone.now().timestamp() * 1000)}",
            staff=task.staff,
            customer_id=task.customer_id,
            payload={"task_id": task.pk, "due_at": due_at.isoformat() if due_at else None},
        )
    return task


def close_task_by_system(task: StaffTask, *, reason: str) -> StaffTask:
    """Dismiss an open task because what caused it went away (a deleted follow-up, ...).

    No rights are checked: the caller's own change (which it checked) is the reason.
    """
    with transaction.atomic():
        updated = (
            StaffTask.objects.for_tenant(task.tenant_id)
            .filter(pk=task.pk, status=StaffTask.Status.OPEN)
            .update(status=StaffTask.Status.DISMISSED, done_at=timezone.now())
        )
        if updated:
            task.status = StaffTask.Status.DISMISSED
            record_event(
                task.tenant_id,
                "task.dismissed",
                key=f"task.dismissed:{task.pk}",
                staff=task.staff,
                customer_id=task.customer_id,
                payload={"task_id": task.pk, "kind": task.kind, "by": None, "reason": reason},
            )
    return task
