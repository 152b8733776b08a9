"""Reads of the staff task inbox: which tasks an actor sees, in the order they should act.

A staff sees their own tasks, their direct reports' (``Staff.direct_leader``: a team lead
follows up on their team's reminders and churn alerts) and whatever their role's data scope
covers (a department lead their department's, an admin everyone's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import F, Q, QuerySet

from siyu.core.scoping import DataScope
from siyu.engagement.models import StaffTask

if TYPE_CHECKING:
    from siyu.tenancy.actor import Actor

WHOSE = ("mine", "reports", "all")


def visible_tasks(actor: Actor) -> QuerySet:
    """Every task the actor may see (any status)."""
    tasks = StaffTask.objects.for_tenant(actor.tenant_id)
    if actor.data_scope == DataScope.TENANT:
        return tasks
    if actor.staff_id is None:
        return tasks.none()
    seen = Q(staff_id=actor.staff_id) | Q(staff__direct_leader_id=actor.staff_id)
    if actor.data_scope == DataScope.DEPARTMENT:
        seen |= Q(staff__department_id__in=actor.department_ids)
    return tasks.filter(seen)


def inbox(actor: Actor, *, whose: str = "mine", status: str | None = "open") -> QuerySet:
    """Tasks to act on, due soonest first (tasks without a due date last, newest first).

    ``whose``: ``mine`` (assigned to the actor), ``reports`` (their direct reports'), or
    ``all`` (everything they may see).
    """
    tasks = visible_tasks(actor).select_related("staff", "customer")
    if whose == "mine":
        tasks = tasks.filter(staff_id=actor.staff_id) if actor.staff_id else tasks.none()
    elif whose == "reports":
        tasks = (
            tasks.filter(staff__direct_leader_id=actor.staff_id) if actor.staff_id else tasks.none()
        )
    if status:
        tasks = tasks.filter(status=status)
    return tasks.order_by(F("due_at").asc(nulls_last=True), "-id")
