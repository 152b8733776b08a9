"""Churn alerts (流失提醒): a friendship ended; who should try to win the customer back.

A customer deleting a staff (WeCom's ``del_follow_user``) is the strongest churn signal a
private domain gets: the handler of ``follow.deleted_by_customer`` (``handlers.py``) raises a
``ChurnAlert`` with the context a salesperson needs to react (the channel the customer came
from, how long they were friends, their last interaction, what they spent, whether another
staff still has them) and gives the staff and their direct leader a win-back task. A staff
deleting a customer (``del_external_contact``) is recorded as an alert of kind ``by_staff``
without tasks: it is a signal about the staff's work, not a customer to win back.

Not alerts: friendships ended by a hand-over (WeCom's ``DELETE_BY_TRANSFER``; event source
``handover`` / ``transfer``) and friendships a full sync found missing (``sync``: nobody
knows who ended them). Everything here is idempotent: one alert per ended friendship
(unique ``follow`` + ``occurred_at``), one task per (staff, alert).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.core.audit import record_audit
from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.core.models import Event
from siyu.customers import events
from siyu.customers.models import ChurnAlert, Customer, Follow
from siyu.tenancy.actor import Actor

# Event types this module records.
CHURN_ALERT_RAISED = "churn_alert.raised"  # key "churn_alert.raised:{alert_id}"
CHURN_ALERT_STATUS_CHANGED = "churn_alert.status_changed"  # key "...:{alert_id}:{status}"

# Order facts that carry ``amount_fen`` (commerce records them; none exist before it does):
# the value of a lost customer is what they paid minus what was refunded.
ORDER_VALUE_EVENTS: dict[str, int] = {"order.paid": 1, "order.refunded": -1}
# Sources of ended friendships that are no churn: a hand-over moves the customer on
# purpose; a sync only sees a friendship missing, not who ended it.
NOT_CHURN_SOURCES = frozenset({"handover", "transfer"})
UNKNOWN_CAUSE_SOURCES = frozenset({"sync"})
WIN_BACK_WITHIN = timedelta(days=1)  # due time of the win-back task

OPEN_STATUSES = (ChurnAlert.Status.OPEN, ChurnAlert.Status.CONTACTED)
# Which status may follow which (a resolved alert stays resolved: it is history).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    ChurnAlert.Status.OPEN: (
        ChurnAlert.Status.CONTACTED,
        ChurnAlert.Status.RECOVERED,
        ChurnAlert.Status.CLOSED,
    ),
    ChurnAlert.Status.CONTACTED: (ChurnAlert.Status.RECOVERED, ChurnAlert.Status.CLOSED),
    ChurnAlert.Status.RECOVERED: (),
    ChurnAlert.Status.CLOSED: (),
}
CHANGE_PERMISSION = "customers.change_churnalert"


def task_source_key(alert: ChurnAlert) -> str:
    return f"churn_alert:{alert.pk}"


# --- raising alerts (from the deletion events) ---------------------------------------------
def _moment(value: Any, default: datetime) -> datetime:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return default
    return default


def customer_value_fen(tenant: Any, customer_ids: list[int]) -> int:
    """Paid minus refunded, in fen, from the order events of these customer records."""
    total = 0
    rows = (
        Event.objects.for_tenant(tenant)
        .filter(customer_id__in=customer_ids, type__in=list(ORDER_VALUE_EVENTS))
        .values_list("type", "payload")
    )
    for event_type, payload in rows:
        try:
            amount = int((payload or {}).get("amount_fen") or 0)
        except (TypeError, ValueError):
            continue
        total += ORDER_VALUE_EVENTS[event_type] * amount
    return total


def alert_for_deletion(event: Event) -> ChurnAlert | None:
    """Raise (or find) the alert of the friendship a deletion event ended; None when the
    deletion is no churn (hand-over, sync) or its rows are gone."""
    kind = (
        ChurnAlert.Kind.DELETED_BY_CUSTOMER
        if event.type == events.FOLLOW_DELETED_BY_CUSTOMER
        else ChurnAlert.Kind.DELETED_BY_STAFF
    )
    if event.source in NOT_CHURN_SOURCES:
        return None
    if kind == ChurnAlert.Kind.DELETED_BY_STAFF and event.source in UNKNOWN_CAUSE_SOURCES:
        return None
    tenant_id = event.tenant_id
    follow = (
        Follow.objects.for_tenant(tenant_id)
        .select_related("customer", "staff")
        .filter(customer_id=event.customer_id, staff_id=event.staff_id)
        .first()
    )
    if follow is None:
        return None
    payload = event.payload or {}
    occurred_at = _moment(payload.get("deleted_at"), event.occurred_at)
    added_at = _moment(payload.get("added_at"), follow.added_at)
    with transaction.atomic():
        customer = (
            Customer.objects.for_tenant(tenant_id).select_for_update().get(pk=follow.customer_id)
        )
        context = _context(customer, follow, occurred_at, added_at)
        # Handlers may run late: if the friendship has begun again since, the alert is
        # history already won back.
        won_back = follow.is_active and follow.added_at > occurred_at
        if won_back:
            context |= {"status": ChurnAlert.Status.RECOVERED, "resolved_at": follow.added_at}
        alert, created = ChurnAlert.objects.for_tenant(tenant_id).get_or_create(
            tenant_id=tenant_id,
            follow=follow,
            occurred_at=occurred_at,
            defaults={"customer": customer, "staff": follow.staff, "kind": kind, **context},
        )
        if created:
            record_event(
                tenant_id,
                CHURN_ALERT_RAISED,
                key=f"{CHURN_ALERT_RAISED}:{alert.pk}",
                staff=follow.staff,
                customer_id=customer.pk,
                payload={
                    "alert_id": alert.pk,
                    "kind": kind,
                    "other_follows": alert.other_follows,
                    "value_fen": alert.value_fen,
                },
                source=event.source,
                occurred_at=occurred_at,
            )
        if kind == ChurnAlert.Kind.DELETED_BY_CUSTOMER and alert.status in OPEN_STATUSES:
            _create_win_back_tasks(alert)
    return alert


def _context(
    customer: Customer, follow: Follow, occurred_at: datetime, added_at: datetime
) -> dict[str, Any]:
    from siyu.customers.merge import merged_customer_ids

    others = (
        Follow.objects.for_tenant(customer.tenant_id)
        .filter(customer=customer, status=Follow.Status.ACTIVE)
        .exclude(pk=follow.pk)
        .count()
    )
    return {
        "source_state": follow.state or customer.source_state,
        "tenure_days": max(0, (occurred_at - added_at).days),
        "last_interaction_at": customer.last_interaction_at,
        "value_fen": customer_value_fen(
            customer.tenant_id, merged_customer_ids(customer.tenant_id, customer.pk)
        ),
        "other_follows": others,
    }


def _create_win_back_tasks(alert: ChurnAlert) -> None:
    """A win-back task for the staff (while employed) and for their direct leader."""
    from siyu.engagement.models import StaffTask
    from siyu.engagement.services import create_task

    staff = alert.staff
    assignees = [staff] if staff.is_active else []
    leader = staff.direct_leader
    if leader is not None and leader.is_active and leader.pk != staff.pk:
        assignees.append(leader)
    customer = alert.customer
    title = _("Win back %(customer)s, who deleted %(staff)s") % {
        "customer": customer,
        "staff": staff.name,
    }
    detail = _(
        "Friends for %(days)d days; source: %(source)s; spent %(value).2f yuan; "
        "%(others)d other staff still friends."
    ) % {
        "days": alert.tenure_days,
        "source": alert.source_state or "-",
        "value": alert.value_fen / 100,
        "others": alert.other_follows,
    }
    for assignee in assignees:
        create_task(
            alert.tenant_id,
            assignee,
            title=title,
            kind=StaffTask.Kind.CHURN,
            detail=detail,
            customer=customer,
            due_at=alert.occurred_at + WIN_BACK_WITHIN,
            source_key=task_source_key(alert),
        )


# --- resolving alerts -----------------------------------------------------------------------
def visible_alerts(actor: Actor):
    """The alerts ``actor`` may see: their tenant, narrowed to their data scope (a sales
    staff sees the alerts of friendships they had)."""
    return ChurnAlert.objects.for_actor(actor)


def alert_for(actor: Actor, alert_id: Any) -> ChurnAlert:
    try:
        pk = int(alert_id)
    except (TypeError, ValueError):
        pk = 0
    alert = visible_alerts(actor).select_related("customer", "staff").filter(pk=pk).first()
    if alert is None:
        raise NotFound(_("Churn alert not found"), details={"id": alert_id})
    return alert


def set_alert_status(actor: Actor, alert: ChurnAlert | int, status: str) -> ChurnAlert:
    """Move an alert on: contacted, recovered (won back) or closed (given up).

    Its win-back tasks follow: done when the customer was contacted or recovered,
    dismissed when the alert is closed.
    """
    if not actor.has_perm(CHANGE_PERMISSION):
        raise Forbidden(_("Your role may not change churn alerts"))
    alert = alert_for(actor, getattr(alert, "pk", alert))
    if status not in ChurnAlert.Status.values:
        raise InvalidInput(
            _("Unknown status %(status)s") % {"status": status}, details={"status": status}
        )
    with transaction.atomic():
        locked = ChurnAlert.objects.for_tenant(actor.tenant).select_for_update().get(pk=alert.pk)
        if status == locked.status:
            return locked
        if status not in TRANSITIONS[locked.status]:
            raise Conflict(
                _("A %(current)s alert cannot become %(status)s")
                % {"current": locked.get_status_display(), "status": status},
                details={"status": status},
            )
        before = locked.status
        _change_status(locked, status, at=timezone.now(), source=actor.channel)
        record_audit(
            actor, "churn_alert.status_changed", locked, changes={"status": [before, status]}
        )
    return locked


def _change_status(alert: ChurnAlert, status: str, *, at: datetime, source: str) -> None:
    alert.status = status
    if status in (ChurnAlert.Status.RECOVERED, ChurnAlert.Status.CLOSED):
        alert.resolved_at = at
    alert.save(update_fields=["status", "resolved_at"])
    record_event(
        alert.tenant_id,
        CHURN_ALERT_STATUS_CHANGED,
        key=f"{CHURN_ALERT_STATUS_CHANGED}:{alert.pk}:{status}",
        staff=alert.staff,
        customer_id=alert.customer_id,
        payload={"alert_id": alert.pk, "status": status},
        source=source,
        occurred_at=at,
    )
    _close_tasks(alert, done=status != ChurnAlert.Status.CLOSED)


def _close_tasks(alert: ChurnAlert, *, done: bool) -> None:
    from siyu.engagement.models import StaffTask
    from siyu.engagement.services import complete_task, dismiss_task
    from siyu.tenancy.services import system_actor

    actor = system_actor(alert.tenant)
    tasks = StaffTask.objects.for_tenant(alert.tenant_id).filter(
        source_key=task_source_key(alert), status=StaffTask.Status.OPEN
    )
    for task in tasks:
        (complete_task if done else dismiss_task)(actor, task)


def recover_alerts(
    tenant: Any, customer_id: int, *, at: datetime, staff_id: int | None = None
) -> int:
    """The customer came back (re-added the staff, or any staff): their open alerts raised
    before ``at`` are recovered. Returns how many."""
    alerts = (
        ChurnAlert.objects.for_tenant(tenant)
        .select_for_update()
        .filter(customer_id=customer_id, status__in=OPEN_STATUSES, occurred_at__lte=at)
    )
    if staff_id is not None:
        alerts = alerts.filter(staff_id=staff_id)
    count = 0
    with transaction.atomic():
        for alert in alerts.select_related("tenant"):
            _change_status(alert, ChurnAlert.Status.RECOVERED, at=at, source="system")
            count += 1
    return count
