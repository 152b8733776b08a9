"""Staff hand-over (在职转接 / 离职继承): move customers from one staff to another through
WeCom's transfer APIs, keeping the history and WeCom's answer for every customer.

1. ``start_handover`` records a ``Handover`` (who, to whom, why, the message) with one
   ``HandoverItem`` per customer, all ``queued``, and queues ``submit_handover``.
2. ``submit_handover`` calls ``externalcontact/transfer_customer`` (staff still employed) or
   ``externalcontact/resigned/transfer_customer`` (departed staff) with at most 100 customers
   per call and records WeCom's immediate errcode per customer: 0 → ``waiting`` (the customer
   has 24 h to refuse), anything else → ``failed`` with the errcode and its meaning (40096
   unknown external userid, 40097 staff not departed, 40128 transferred too often, 40129
   already in transfer, 40130 same staff, 40131 not this staff's customer, ...).
3. The periodic ``poll_handovers`` asks ``(resigned/)transfer_result`` for every hand-over
   still waiting: status 1 → ``succeeded``, 2 → still ``waiting``, 3 → ``refused``, 4 →
   ``limit`` (the takeover staff has too many customers), 5 → ``failed`` (WeCom has no such
   transfer).
4. A success moves the friendship (``apply_takeover``): a follow for the takeover staff
   (WeCom's add way 202, "assigned", with the old remark, description and tags), then the
   old follow ends; ``Customer.owner`` is recomputed by the customers services. WeCom also
   tells us by callbacks — ``del_external_contact`` with ``Source=DELETE_BY_TRANSFER`` for
   the old staff, ``add_external_contact`` (add way 202) for the new one, ``transfer_fail``
   for a refusal — and whichever of poll or callbacks comes first applies the result; the
   others find it applied (the item is ``succeeded``; the follow already exists or has
   ended), so nothing is done twice. Those ends are not churn (event source
   ``handover``/``transfer``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from siyu.core.audit import record_audit
from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.core.models import Event
from siyu.core.tasks import on_commit_task
from siyu.customers.models import Customer, Follow, FollowTag, Handover, HandoverItem
from siyu.tenancy.actor import Actor
from siyu.tenancy.models import Staff

logger = logging.getLogger(__name__)

HANDOVER_STARTED = "handover.started"  # key "handover.started:{id}"
HANDOVER_FINISHED = "handover.finished"  # key "handover.finished:{id}"
# One customer's result; key "handover.customer_{status}:{item_id}"
CUSTOMER_HANDED_OVER = "customer.handed_over"
CUSTOMER_HANDOVER_FAILED = "customer.handover_failed"

HANDOVER_PERMISSION = "customers.handover_customer"
BATCH_SIZE = 100  # WeCom: at most 100 customers per transfer call
MESSAGE_MAX_CHARS = 200  # WeCom: transfer_success_msg ≤ 200 characters
REASON_MAX_CHARS = 200
ASSIGNED = Follow.AddWay.ASSIGNED  # WeCom's add_way of a transferred friendship (202)
TRANSFER_SOURCES = ("handover", "transfer")

# transfer_result's customer[].status → the item's status
WECOM_STATUSES: dict[int, str] = {
    1: HandoverItem.Status.SUCCEEDED,
    2: HandoverItem.Status.WAITING,
    3: HandoverItem.Status.REFUSED,
    4: HandoverItem.Status.LIMIT_EXCEEDED,
    5: HandoverItem.Status.FAILED,
}
# transfer_fail callback's FailReason → the item's status
FAIL_REASONS: dict[str, str] = {
    "customer_refused": HandoverItem.Status.REFUSED,
    "customer_limit_exceed": HandoverItem.Status.LIMIT_EXCEEDED,
}
PENDING_ITEM_STATUSES = (HandoverItem.Status.QUEUED, HandoverItem.Status.WAITING)


# --- reading ---------------------------------------------------------------------------------
def visible_handovers(actor: Actor) -> QuerySet:
    """Hand-overs within the actor's data scope (by the staff who hands over), with counts
    of their customers per status."""
    counts = {
        f"count_{status}": Count("items", filter=Q(items__status=status))
        for status in HandoverItem.Status.values
    }
    return (
        Handover.objects.for_actor(actor)
        .select_related("from_staff", "to_staff", "created_by")
        .annotate(count_total=Count("items"), **counts)
    )


def handover_for(actor: Actor, handover_id: Any) -> Handover:
    try:
        pk = int(handover_id)
    except (TypeError, ValueError):
        pk = 0
    handover = visible_handovers(actor).filter(pk=pk).first() if pk else None
    if handover is None:
        raise NotFound(_("Hand-over not found"), details={"id": handover_id})
    return handover


def items_of(handover: Handover) -> QuerySet:
    return (
        HandoverItem.objects.for_tenant(handover.tenant_id)
        .filter(handover=handover)
        .select_related("customer")
        .order_by("id")
    )


def customers_of(tenant: Any, staff: Staff) -> QuerySet:
    """Customers the staff has an active friendship with (what WeCom can transfer)."""
    followed = Follow.objects.for_tenant(tenant).filter(staff=staff, status=Follow.Status.ACTIVE)
    return Customer.objects.for_tenant(tenant).filter(
        pk__in=followed.values("customer_id"), merged_into__isnull=True
    )


def require_handover_right(actor: Actor) -> None:
    if not actor.has_perm(HANDOVER_PERMISSION):
        raise Forbidden(_("Your role may not hand customers over"))


# --- starting --------------------------------------------------------------------------------
def _staff(actor: Actor, value: Staff | int | None, name: str, *, scoped: bool) -> Staff:
    pk = getattr(value, "pk", value)
    rows = Staff.objects.for_actor(actor) if scoped else Staff.objects.for_tenant(actor.tenant)
    staff = rows.filter(pk=pk).first() if isinstance(pk, int) else None
    if staff is None:
        raise NotFound(_("Staff not found"), details={name: pk})
    return staff


def _clean_text(value: str | None, name: str, limit: int) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        raise InvalidInput(
            _("%(field)s may be at most %(limit)d characters") % {"field": name, "limit": limit},
            details={name: len(value)},
        )
    return value


def start_handover(
    actor: Actor,
    *,
    from_staff: Staff | int,
    to_staff: Staff | int,
    customers: Iterable[Customer | int] | None = None,
    all_customers: bool = False,
    message: str = "",
    reason: str = "",
) -> Handover:
    """Hand ``customers`` (or all the staff's customers) from one staff to another.

    The kind follows the handing-over staff: departed → WeCom's resigned transfer (no
    message to the customer: WeCom sends none), employed → in-service transfer with an
    optional message (≤ 200 characters, WeCom's default when empty). The customers must be
    within the actor's data scope and friends of ``from_staff``; a customer already waiting
    in another hand-over is refused (all_customers: left out).
    """
    require_handover_right(actor)
    giver = _staff(actor, from_staff, "from_staff_id", scoped=True)
    taker = _staff(actor, to_staff, "to_staff_id", scoped=False)
    if giver.pk == taker.pk:
        raise InvalidInput(
            _("Hand customers over to another staff"), details={"to_staff_id": taker.pk}
        )
    if not taker.is_active:
        raise InvalidInput(
            _("%(staff)s has left and cannot take customers over") % {"staff": taker.name},
            details={"to_staff_id": taker.pk},
        )
    kind = Handover.Kind.IN_SERVICE if giver.is_active else Handover.Kind.RESIGNED
    message = _clean_text(message, "message", MESSAGE_MAX_CHARS)
    reason = _clean_text(reason, "reason", REASON_MAX_CHARS)
    if message and kind == Handover.Kind.RESIGNED:
        raise InvalidInput(
            _("WeCom sends no message when a departed staff's customers are taken over"),
            details={"message": message},
        )
    chosen = _chosen_customers(actor, giver, customers, all_customers)
    with transaction.atomic():
        handover = Handover.objects.for_tenant(actor.tenant).create(
            tenant=actor.tenant,
            kind=kind,
            from_staff=giver,
            to_staff=taker,
            message=message,
            reason=reason,
            created_by=actor.staff,
        )
        HandoverItem.objects.for_tenant(actor.tenant).bulk_create(
            HandoverItem(tenant=actor.tenant, handover=handover, customer_id=pk) for pk in chosen
        )
        record_event(
            actor.tenant,
            HANDOVER_STARTED,
            key=f"{HANDOVER_STARTED}:{handover.pk}",
            staff=giver,
            payload={
                "handover_id": handover.pk,
                "kind": kind,
                "from_userid": giver.wecom_userid,
                "to_userid": taker.wecom_userid,
                "customers": len(chosen),
                "reason": reason,
            },
            source=actor.channel,
        )
        record_audit(
            actor,
            "handover.started",
            handover,
            changes={"customers": [None, len(chosen)], "to_staff": [None, str(taker)]},
        )
        on_commit_task(submit_handover_task, handover.pk)
    return handover


def _chosen_customers(
    actor: Actor, giver: Staff, customers: Iterable[Customer | int] | None, all_customers: bool
) -> list[int]:
    tenant = actor.tenant
    befriended = customers_of(tenant, giver).filter(
        pk__in=Customer.objects.for_actor(actor).values("pk")
    )
    busy = set(
        HandoverItem.objects.for_tenant(tenant)
        .filter(
            handover__from_staff=giver,
            status__in=PENDING_ITEM_STATUSES,
        )
        .values_list("customer_id", flat=True)
    )
    if all_customers:
        if customers:
            raise InvalidInput(
                _("Choose customers or all customers, not both"), details={"customer_ids": None}
            )
        chosen = [pk for pk in befriended.order_by("id").values_list("pk", flat=True)]
        chosen = [pk for pk in chosen if pk not in busy]
    else:
        wanted = list(dict.fromkeys(int(getattr(c, "pk", c)) for c in customers or ()))
        if not wanted:
            raise InvalidInput(_("Choose the customers to hand over"), details={"customer_ids": []})
        allowed = set(befriended.filter(pk__in=wanted).values_list("pk", flat=True))
        strangers = [pk for pk in wanted if pk not in allowed]
        if strangers:
            raise InvalidInput(
                _("Not customers of %(staff)s: %(ids)s")
                % {"staff": giver.name, "ids": ", ".join(map(str, strangers))},
                details={"customer_ids": strangers},
            )
        waiting = [pk for pk in wanted if pk in busy]
        if waiting:
            raise Conflict(
                _("Already being handed over: %(ids)s") % {"ids": ", ".join(map(str, waiting))},
                details={"customer_ids": waiting},
            )
        chosen = wanted
    if not chosen:
        raise InvalidInput(
            _("%(staff)s has no customers to hand over") % {"staff": giver.name},
            details={"from_staff_id": giver.pk},
        )
    return chosen


# --- submitting to WeCom ---------------------------------------------------------------------
def _errcode_detail(errcode: int | None, fallback: str = "") -> str:
    from siyu.wecom.errors import describe

    return (describe(errcode) or fallback)[:255]


def submit_handover(handover_id: int) -> Handover | None:
    """Send the queued customers of a hand-over to WeCom, 100 per call; idempotent (only
    ``queued`` items are sent, and each batch's answer is stored before the next call).

    A refusal of the whole call (e.g. 40097: the staff has not left) fails that batch's
    customers with the errcode; WeCom being unreachable or busy leaves them queued and
    raises, so that the task queue retries.
    """
    from siyu.wecom.client import client_for
    from siyu.wecom.errors import (
        WeComBusy,
        WeComError,
        WeComNotConfigured,
        WeComRateLimited,
        WeComUnavailable,
    )

    handover = (
        Handover.objects.unscoped("a task by id")
        .select_related("tenant", "from_staff", "to_staff")
        .filter(pk=handover_id)
        .first()
    )
    if handover is None:
        return None
    tenant = handover.tenant
    items = HandoverItem.objects.for_tenant(tenant).filter(
        handover=handover, status=HandoverItem.Status.QUEUED
    )
    resigned = handover.kind == Handover.Kind.RESIGNED
    try:
        client = client_for(tenant, rate_limit_max_wait=60)
    except WeComNotConfigured as error:
        batch = list(items)
        _store_submission(handover, batch, {item.pk: (None, error.message) for item in batch})
        _settle(handover)
        return handover
    while True:
        batch = list(items.select_related("customer").order_by("id")[:BATCH_SIZE])
        if not batch:
            break
        userids = [item.customer.external_userid for item in batch]
        try:
            if resigned:
                answer = client.resigned_transfer_customer(
                    handover.from_staff.wecom_userid, handover.to_staff.wecom_userid, userids
                )
            else:
                answer = client.transfer_customer(
                    handover.from_staff.wecom_userid,
                    handover.to_staff.wecom_userid,
                    userids,
                    transfer_success_msg=handover.message or None,
                )
        except (WeComUnavailable, WeComBusy, WeComRateLimited):
            raise
        except WeComError as error:
            codes = {item.pk: (error.errcode, error.message) for item in batch}
        else:
            by_userid = {
                str(entry.get("external_userid")): entry for entry in answer.get("customer") or ()
            }
            codes = {}
            for item in batch:
                entry = by_userid.get(item.customer.external_userid)
                codes[item.pk] = (
                    int(entry.get("errcode", 0)) if entry else None,
                    "" if entry else _("WeCom did not answer for this customer"),
                )
        _store_submission(handover, batch, codes)
    _settle(handover)
    return handover


def _store_submission(
    handover: Handover, batch: list[HandoverItem], codes: dict[int, tuple[int | None, str]]
) -> None:
    with transaction.atomic():
        for item in batch:
            errcode, message = codes[item.pk]
            if errcode == 0:
                item.status, item.errcode, item.detail = HandoverItem.Status.WAITING, 0, ""
            else:
                item.status = HandoverItem.Status.FAILED
                item.errcode = errcode
                item.detail = _errcode_detail(errcode, message)[:255]
                _record_failure(handover, item)
            item.save(update_fields=["status", "errcode", "detail", "updated_at"])


def _record_failure(handover: Handover, item: HandoverItem) -> None:
    record_event(
        handover.tenant_id,
        CUSTOMER_HANDOVER_FAILED,
        key=f"{CUSTOMER_HANDOVER_FAILED}:{item.pk}",
        staff=handover.from_staff,
        customer_id=item.customer_id,
        payload={
            "handover_id": handover.pk,
            "status": item.status,
            "errcode": item.errcode,
            "detail": item.detail,
            "to_userid": handover.to_staff.wecom_userid,
        },
        source="handover",
    )


def _settle(handover: Handover) -> None:
    """Move the hand-over on once no customer is pending: finished, or failed if none
    succeeded."""
    items = HandoverItem.objects.for_tenant(handover.tenant_id).filter(handover=handover)
    with transaction.atomic():
        locked = (
            Handover.objects.for_tenant(handover.tenant_id).select_for_update().get(pk=handover.pk)
        )
        if items.filter(status__in=PENDING_ITEM_STATUSES).exists():
            if (
                locked.status == Handover.Status.PENDING
                and not items.filter(status=HandoverItem.Status.QUEUED).exists()
            ):
                locked.status = Handover.Status.SUBMITTED
                locked.save(update_fields=["status"])
            handover.status = locked.status
            return
        if locked.status in (Handover.Status.FINISHED, Handover.Status.FAILED):
            return
        succeeded = items.filter(status=HandoverItem.Status.SUCCEEDED).count()
        locked.status = Handover.Status.FINISHED if succeeded else Handover.Status.FAILED
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
        handover.status, handover.finished_at = locked.status, locked.finished_at
        counts = dict(
            items.values_list("status").annotate(n=Count("id")).values_list("status", "n")
        )
        record_event(
            handover.tenant_id,
            HANDOVER_FINISHED,
            key=f"{HANDOVER_FINISHED}:{handover.pk}",
            staff=handover.from_staff,
            payload={"handover_id": handover.pk, "status": locked.status, "counts": counts},
            source="handover",
        )


# --- results ---------------------------------------------------------------------------------
def _when(value: Any) -> datetime:
    try:
        seconds = int(value or 0)
    except (TypeError, ValueError):
        seconds = 0
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds > 0 else timezone.now()


def refresh_handover(handover: Handover) -> dict[str, int]:
    """Ask WeCom for the results of a hand-over's waiting customers and apply them; returns
    how many items changed, per new status."""
    from siyu.customers.selectors import customers_by_external_userid
    from siyu.wecom.client import client_for

    tenant = handover.tenant
    waiting = {
        item.customer_id: item
        for item in HandoverItem.objects.for_tenant(tenant).filter(
            handover=handover, status=HandoverItem.Status.WAITING
        )
    }
    changed: dict[str, int] = {}
    if waiting:
        results = list(
            client_for(tenant, rate_limit_max_wait=60).iter_transfer_results(
                handover.from_staff.wecom_userid,
                handover.to_staff.wecom_userid,
                resigned=handover.kind == Handover.Kind.RESIGNED,
            )
        )
        # Merged customers answer under the external_userid they had: resolve to the record.
        customers = customers_by_external_userid(
            tenant, [str(entry.get("external_userid") or "") for entry in results]
        )
        for entry in results:
            customer = customers.get(str(entry.get("external_userid") or ""))
            item = waiting.get(customer.pk) if customer else None
            status = WECOM_STATUSES.get(_int(entry.get("status")))
            if item is None or status in (None, HandoverItem.Status.WAITING):
                continue
            if apply_result(item, status, at=_when(entry.get("takeover_time")), source="handover"):
                changed[status] = changed.get(status, 0) + 1
    _settle(handover)
    return changed


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def apply_result(
    item: HandoverItem, status: str, *, at: datetime, source: str, detail: str = ""
) -> bool:
    """Record WeCom's final answer for one customer (once); a success moves the friendship.
    Returns whether the item changed."""
    tenant_id = item.tenant_id
    with transaction.atomic():
        item = (
            HandoverItem.objects.for_tenant(tenant_id)
            .select_for_update(of=("self",))
            .select_related("handover__from_staff", "handover__to_staff", "customer")
            .get(pk=item.pk)
        )
        if item.status not in PENDING_ITEM_STATUSES:
            return False
        handover = item.handover
        item.status = status
        if status == HandoverItem.Status.SUCCEEDED:
            item.takeover_at = at
            apply_takeover(handover, item.customer, at=at, source=source)
            record_event(
                tenant_id,
                CUSTOMER_HANDED_OVER,
                key=f"{CUSTOMER_HANDED_OVER}:{item.pk}",
                staff=handover.to_staff,
                customer_id=item.customer_id,
                payload={
                    "handover_id": handover.pk,
                    "kind": handover.kind,
                    "from_userid": handover.from_staff.wecom_userid,
                    "to_userid": handover.to_staff.wecom_userid,
                },
                source=source,
                occurred_at=at,
            )
        else:
            item.detail = detail or {
                HandoverItem.Status.REFUSED: "customer_refused",
                HandoverItem.Status.LIMIT_EXCEEDED: "customer_limit_exceed",
            }.get(status, _("WeCom has no record of this transfer"))
            _record_failure(handover, item)
        item.save(update_fields=["status", "takeover_at", "detail", "updated_at"])
    return True


def apply_takeover(handover: Handover, customer: Customer, *, at: datetime, source: str) -> None:
    """Move the friendship from the handing-over staff to the takeover staff, as WeCom did.

    The new follow first (so that the customer is never "lost" in between), with the old
    remark, description and tags; then the old one ends. Either may already be done by
    WeCom's own callbacks: then it is left as it is.
    """
    from siyu.customers import services

    tenant = handover.tenant  # the services take the Tenant itself
    follows = Follow.objects.for_tenant(tenant)
    old = follows.filter(customer=customer, staff=handover.from_staff).first()
    new = follows.filter(customer=customer, staff=handover.to_staff).first()
    if new is None or not new.is_active:
        carried = old if old is not None else Follow()
        tag_ids = (
            list(
                FollowTag.objects.for_tenant(tenant)
                .filter(follow=old)
                .exclude(tag__wecom_tag_id="")
                .values_list("tag__wecom_tag_id", flat=True)
            )
            if old is not None
            else []
        )
        services.upsert_follow(
            tenant,
            customer=customer,
            staff=handover.to_staff,
            added_at=at,
            remark=carried.remark,
            description=carried.description,
            remark_mobiles=carried.remark_mobiles or (),
            remark_corp_name=carried.remark_corp_name,
            add_way=ASSIGNED,
            oper_userid=handover.from_staff.wecom_userid,
            tag_ids=tag_ids,
            source=source,
        )
    if old is not None and old.is_active:
        services.remove_follow(
            tenant, customer=customer, staff=handover.from_staff, by="staff", at=at, source=source
        )


def _waiting_items(tenant: Any, customer: Customer, **handover_filter: Any) -> QuerySet:
    return (
        HandoverItem.objects.for_tenant(tenant)
        .filter(customer=customer, status=HandoverItem.Status.WAITING, **handover_filter)
        .select_related("handover")
        .order_by("id")
    )


def transfer_failed(
    tenant: Any, customer: Customer | None, takeover: Staff | None, reason: str, *, at: datetime
) -> int:
    """WeCom's ``transfer_fail`` callback: the customer refused the takeover staff, or that
    staff has too many customers. Returns how many items it settled."""
    if customer is None or takeover is None:
        return 0
    status = FAIL_REASONS.get(reason, HandoverItem.Status.FAILED)
    count = 0
    for item in _waiting_items(tenant, customer, handover__to_staff=takeover):
        if apply_result(item, status, at=at, source="transfer", detail=reason or ""):
            count += 1
            _settle(item.handover)
    return count


def transfer_observed(tenant: Any, customer: Customer, staff: Staff, *, at: datetime) -> bool:
    """WeCom ended the staff's friendship because of a transfer (``del_external_contact``
    with ``Source=DELETE_BY_TRANSFER``): settle our waiting hand-over as a success, or —
    a transfer made outside Siyu — just end the friendship (no churn either way)."""
    from siyu.customers import services

    items = list(_waiting_items(tenant, customer, handover__from_staff=staff))
    for item in items:
        apply_result(item, HandoverItem.Status.SUCCEEDED, at=at, source="transfer")
        _settle(item.handover)
    if not items:
        services.remove_follow(
            tenant, customer=customer, staff=staff, by="staff", at=at, source="transfer"
        )
    return True


def is_takeover_add(event: Event) -> bool:
    """A friendship WeCom made by a transfer (add way 202) that Siyu did not record itself."""
    payload = event.payload or {}
    return event.source not in TRANSFER_SOURCES and _int(payload.get("add_way")) == ASSIGNED


def takeover_followed(event: Event) -> int:
    """A friendship WeCom made by a transfer (add way 202) reached us before the poll did:
    the waiting hand-over of that customer to that staff succeeded."""
    if not is_takeover_add(event):
        return 0
    customer = Customer.objects.for_tenant(event.tenant_id).filter(pk=event.customer_id).first()
    staff = event.staff
    if customer is None or staff is None:
        return 0
    count = 0
    for item in _waiting_items(event.tenant_id, customer, handover__to_staff=staff):
        if apply_result(
            item, HandoverItem.Status.SUCCEEDED, at=event.occurred_at, source="transfer"
        ):
            count += 1
            _settle(item.handover)
    return count


def remind_leader_of_departure(event: Event) -> None:
    """A staff left with customers: their direct leader gets a task to hand them over."""
    from siyu.engagement.models import StaffTask
    from siyu.engagement.services import create_task

    staff = event.staff
    if staff is None:
        return
    leader = staff.direct_leader
    left_with = customers_of(event.tenant_id, staff).count()
    if leader is None or not leader.is_active or not left_with:
        return
    create_task(
        event.tenant_id,
        leader,
        kind=StaffTask.Kind.HANDOVER,
        title=_("%(staff)s has left: hand over their %(count)d customers")
        % {"staff": staff.name, "count": left_with},
        source_key=f"staff_departed:{staff.pk}",
    )


# --- tasks -----------------------------------------------------------------------------------
@db_task(retries=3, retry_delay=60)
def submit_handover_task(handover_id: int) -> None:
    submit_handover(handover_id)


def poll_all() -> int:
    """Refresh every hand-over with customers waiting for WeCom; return how many."""
    pending = (
        Handover.objects.unscoped("the periodic poll of every tenant's hand-overs")
        .filter(status=Handover.Status.SUBMITTED)
        .select_related("tenant", "from_staff", "to_staff")
        .order_by("id")
    )
    count = 0
    for handover in pending:
        try:
            refresh_handover(handover)
        except Exception:  # one tenant's WeCom trouble must not stop the others
            logger.exception("Polling hand-over %s failed", handover.pk)
            continue
        count += 1
    return count


@db_periodic_task(crontab(minute="*/10"))
def poll_handovers() -> None:
    """Every 10 minutes: WeCom's results for the customers still waiting."""
    poll_all()
