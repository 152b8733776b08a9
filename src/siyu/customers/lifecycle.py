"""Lifecycle stages (new → active → silent → at risk → churned) from the tenant's rules.

A customer's stage follows from three facts: when they were first added, when they last
interacted (``Customer.last_interaction_at``) and whether any staff is still their friend
(``Customer.status``). The rules, in order (the first that applies wins; days come from the
tenant's ``LifecyclePolicy``, see docs/customers.md):

1. **churned** — no active friendship remains (``status == lost``), or no interaction for
   ``churned_after_days``;
2. **at risk** — no interaction for ``at_risk_after_days``;
3. **silent** — no interaction for ``silent_after_days``;
4. **new** — first added within ``new_days``;
5. **active** — otherwise.

"No interaction for N days" counts from the last interaction, or from the first add when
there has been none (or from when the record was created, for a customer never added).

``last_interaction_at`` moves forward in a handler when an interaction event arrives (the
policy's list, or ``DEFAULT_INTERACTION_TYPES``), which also recomputes that customer's
stage; a daily task recomputes every stage with one UPDATE per stage (set-based, never a
loop over customers) and catches up interactions of event types configured later. A change
of stage records ``customer.stage_changed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import Max, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from siyu.core.audit import record_audit
from siyu.core.errors import Forbidden, InvalidInput
from siyu.core.events import EventSpec, handles, record_event, record_events
from siyu.core.models import Event
from siyu.core.tasks import on_commit_task
from siyu.customers.models import Customer, LifecyclePolicy, LifecycleStage

if TYPE_CHECKING:
    from siyu.tenancy.actor import Actor

# A customer's stage changed. payload {"from", "to", "reason"}
# key "customer.stage_changed:{customer_id}:{to}:{ms}"
STAGE_CHANGED = "customer.stage_changed"
POLICY_UPDATED = "lifecycle.policy_updated"

# Event types that count as an interaction unless a tenant lists its own.
DEFAULT_INTERACTION_TYPES: tuple[str, ...] = (
    "message.received",  # the customer wrote to a staff (chat archive / sidebar)
    "message.sent",  # a staff wrote to the customer one to one
    "chat.replied",
    "group.message",  # the customer spoke in a customer group
    "group.member_joined",
    "material.opened",  # opened a shared poster, article, product page ...
    "link.clicked",
    "order.paid",
    "order.refunded",
    "form.submitted",
    "checkin.done",
    "campaign.joined",
    "coupon.redeemed",
    "points.earned",
    "customer.returned",  # a lost customer added a staff again
    "customer.followed_up",  # a staff's call / chat / visit / meeting (siyu.customers.profiles)
)
# Subscribed in-process; a tenant may name further types: the daily task catches those up.
SUBSCRIBED_TYPES = DEFAULT_INTERACTION_TYPES
STATUS_TYPES = ("customer.lost", "customer.returned", "customer.added", "follow.added")
CATCH_UP_DAYS = 2  # the daily catch-up looks this far back (overlap against a missed run)
CHUNK = 2000

STAGE_ORDER = (
    LifecycleStage.CHURNED,
    LifecycleStage.AT_RISK,
    LifecycleStage.SILENT,
    LifecycleStage.NEW,
    LifecycleStage.ACTIVE,
)


# --- the policy ---------------------------------------------------------------------------
def policy_for(tenant: Any) -> LifecyclePolicy:
    """The tenant's rules, created with the defaults on first use."""
    tenant_id = getattr(tenant, "pk", tenant)
    policies = LifecyclePolicy.objects.for_tenant(tenant_id)
    policy = policies.first()
    if policy is not None:
        return policy
    try:
        with transaction.atomic():
            return policies.create(tenant_id=tenant_id)
    except IntegrityError:  # created concurrently
        return policies.get()


def interaction_types(policy: LifecyclePolicy) -> tuple[str, ...]:
    return tuple(policy.interaction_types or DEFAULT_INTERACTION_TYPES)


def _clean_days(values: dict[str, Any], policy: LifecyclePolicy) -> dict[str, int]:
    names = ("new_days", "silent_after_days", "at_risk_after_days", "churned_after_days")
    days = {name: getattr(policy, name) for name in names}
    for name in names:
        if name not in values:
            continue
        try:
            days[name] = int(values[name])
        except (TypeError, ValueError):
            days[name] = -1
        if not 0 <= days[name] <= 3650:
            raise InvalidInput(
                _("%(field)s is a number of days from 0 to 3650") % {"field": name},
                details={name: values[name]},
            )
    if not days["silent_after_days"] < days["at_risk_after_days"] < days["churned_after_days"]:
        raise InvalidInput(
            _("Silent, at risk and churned must come one after another (in days)"),
            details={"silent_after_days": days["silent_after_days"]},
        )
    if days["silent_after_days"] < 1:
        raise InvalidInput(
            _("A customer is silent after at least one day"), details={"silent_after_days": 0}
        )
    return days


def _clean_types(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [line.strip() for line in value.replace(",", "\n").splitlines()]
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(
            _("Interaction types are a list of event types"), details={"interaction_types": value}
        )
    types: list[str] = []
    for item in value:
        text = str(item).strip()
        if not text:
            continue
        if len(text) > 80 or " " in text or "." not in text:
            raise InvalidInput(
                _("%(type)s is not an event type (like order.paid)") % {"type": text[:80]},
                details={"interaction_types": text[:80]},
            )
        if text not in types:
            types.append(text)
    return types


@transaction.atomic
def update_policy(actor: Actor, **values: Any) -> LifecyclePolicy:
    """Change the tenant's lifecycle rules; stages follow at the next recompute (queued now)."""
    if not actor.has_perm("customers.change_lifecyclepolicy"):
        raise Forbidden(
            _("Your role does not allow this (needs '%(permission)s')")
            % {"permission": "customers.change_lifecyclepolicy"}
        )
    allowed = {
        "new_days",
        "silent_after_days",
        "at_risk_after_days",
        "churned_after_days",
        "interaction_types",
    }
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise InvalidInput(
            _("These cannot be changed: %(names)s") % {"names": ", ".join(unknown)},
            details={"unknown": unknown},
        )
    policy = policy_for(actor.tenant)
    policy = LifecyclePolicy.objects.for_tenant(actor.tenant).select_for_update().get(pk=policy.pk)
    cleaned: dict[str, Any] = _clean_days(values, policy)
    if "interaction_types" in values:
        cleaned["interaction_types"] = _clean_types(values["interaction_types"])
    changes = {
        name: [getattr(policy, name), value]
        for name, value in cleaned.items()
        if getattr(policy, name) != value
    }
    if not changes:
        return policy
    for name, value in cleaned.items():
        setattr(policy, name, value)
    policy.save()
    record_event(
        actor.tenant,
        POLICY_UPDATED,
        key=f"{POLICY_UPDATED}:{policy.pk}:{int(timezone.now().timestamp() * 1000)}",
        staff=actor.staff,
        payload={"changes": changes},
        source=actor.channel,
    )
    record_audit(actor, POLICY_UPDATED, policy, changes=changes)
    on_commit_task(recompute_stages_task, actor.tenant_id)
    return policy


# --- the rules ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cutoffs:
    """The moments the policy's day counts mean at ``now``."""

    new: datetime
    silent: datetime
    at_risk: datetime
    churned: datetime

    @classmethod
    def of(cls, policy: LifecyclePolicy, now: datetime) -> Cutoffs:
        return cls(
            new=now - timedelta(days=policy.new_days),
            silent=now - timedelta(days=policy.silent_after_days),
            at_risk=now - timedelta(days=policy.at_risk_after_days),
            churned=now - timedelta(days=policy.churned_after_days),
        )


def _quiet_since(cutoff: datetime) -> Q:
    """No interaction since ``cutoff``: the last one (else the add, else creation) is older."""
    return (
        Q(last_interaction_at__lt=cutoff)
        | Q(last_interaction_at__isnull=True, first_added_at__lt=cutoff)
        | Q(last_interaction_at__isnull=True, first_added_at__isnull=True, created_at__lt=cutoff)
    )


def _heard_since(cutoff: datetime) -> Q:
    """The exact complement of ``_quiet_since`` (written out: no NULL surprises in NOT)."""
    return (
        Q(last_interaction_at__gte=cutoff)
        | Q(last_interaction_at__isnull=True, first_added_at__gte=cutoff)
        | Q(last_interaction_at__isnull=True, first_added_at__isnull=True, created_at__gte=cutoff)
    )


def _added_since(cutoff: datetime) -> Q:
    return Q(first_added_at__gte=cutoff) | Q(first_added_at__isnull=True, created_at__gte=cutoff)


def _added_before(cutoff: datetime) -> Q:
    return Q(first_added_at__lt=cutoff) | Q(first_added_at__isnull=True, created_at__lt=cutoff)


def stage_conditions(policy: LifecyclePolicy, now: datetime) -> dict[str, Q]:
    """One condition per stage; together they split the customers without overlap."""
    cut = Cutoffs.of(policy, now)
    lost = Q(status=Customer.Status.LOST)
    following = Q(status=Customer.Status.ACTIVE)
    return {
        LifecycleStage.CHURNED: lost | (following & _quiet_since(cut.churned)),
        LifecycleStage.AT_RISK: following & _quiet_since(cut.at_risk) & _heard_since(cut.churned),
        LifecycleStage.SILENT: following & _quiet_since(cut.silent) & _heard_since(cut.at_risk),
        LifecycleStage.NEW: following & _heard_since(cut.silent) & _added_since(cut.new),
        LifecycleStage.ACTIVE: following & _heard_since(cut.silent) & _added_before(cut.new),
    }


def stage_for(customer: Customer, policy: LifecyclePolicy, now: datetime) -> str:
    """The stage of one customer (the same rules as ``stage_conditions``, in Python)."""
    cut = Cutoffs.of(policy, now)
    if customer.status == Customer.Status.LOST:
        return LifecycleStage.CHURNED
    reference = customer.last_interaction_at or customer.first_added_at or customer.created_at
    if reference < cut.churned:
        return LifecycleStage.CHURNED
    if reference < cut.at_risk:
        return LifecycleStage.AT_RISK
    if reference < cut.silent:
        return LifecycleStage.SILENT
    added = customer.first_added_at or customer.created_at
    return LifecycleStage.NEW if added >= cut.new else LifecycleStage.ACTIVE


# --- recomputing ----------------------------------------------------------------------------------
def _owner(tenant_id: int, owner_id: int | None) -> Any:
    if owner_id is None:
        return None
    from siyu.tenancy.models import Staff

    return Staff(pk=owner_id, tenant_id=tenant_id)


def _change_spec(
    tenant_id: int, customer_id: int, owner_id: int | None, before: str, after: str, at: datetime
) -> EventSpec:
    return EventSpec(
        STAGE_CHANGED,
        key=f"{STAGE_CHANGED}:{customer_id}:{after}:{int(at.timestamp() * 1000)}",
        staff=_owner(tenant_id, owner_id),
        customer_id=customer_id,
        payload={"from": before, "to": after},
        occurred_at=at,
    )


def recompute_stages(tenant: Any, *, now: datetime | None = None) -> dict[str, int]:
    """Bring every customer of the tenant to the stage the rules give at ``now``.

    Per stage: read the ids (and old stages, for the events) of customers that must move in
    chunks, then one UPDATE per chunk that re-checks the condition, and the chunk's
    ``customer.stage_changed`` events in one INSERT. Returns ``{stage: customers moved}``.
    """
    tenant_id = getattr(tenant, "pk", tenant)
    now = now or timezone.now()
    policy = policy_for(tenant_id)
    customers = Customer.objects.for_tenant(tenant_id).filter(merged_into__isnull=True)
    moved: dict[str, int] = {}
    for stage, condition in stage_conditions(policy, now).items():
        moved[stage] = 0
        pending = customers.filter(condition).exclude(lifecycle_stage=stage)
        while True:
            rows = list(
                pending.order_by("pk").values_list("pk", "lifecycle_stage", "owner_id")[:CHUNK]
            )
            if not rows:
                break
            with transaction.atomic():
                updated = (
                    customers.filter(condition, pk__in=[row[0] for row in rows])
                    .exclude(lifecycle_stage=stage)
                    .update(lifecycle_stage=stage, lifecycle_changed_at=now)
                )
                record_events(
                    tenant_id,
                    [
                        _change_spec(tenant_id, pk, owner, old, stage, now)
                        for pk, old, owner in rows
                    ],
                )
            moved[stage] += updated
            if len(rows) < CHUNK:
                break
    return moved


def recompute_customer(tenant: Any, customer_id: int, *, now: datetime | None = None) -> str | None:
    """Recompute one customer's stage (after one of their events); the new stage if it moved."""
    return recompute_customers(tenant, [customer_id], now=now).get(customer_id)


def recompute_customers(
    tenant: Any, customer_ids: Iterable[int], *, now: datetime | None = None
) -> dict[int, str]:
    """Recompute the stages of some customers of one tenant (after their events): one read
    of the rules and of the customers, one UPDATE per new stage, the events in one INSERT.
    Returns ``{customer id: new stage}`` for those that moved."""
    tenant_id = getattr(tenant, "pk", tenant)
    now = now or timezone.now()
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    with transaction.atomic():
        customers = list(
            Customer.objects.for_tenant(tenant_id)
            .select_for_update()
            .filter(pk__in=ids, merged_into__isnull=True)
        )
        if not customers:
            return {}
        policy = policy_for(tenant_id)
        moved: dict[int, str] = {}
        specs = []
        for customer in customers:
            stage = stage_for(customer, policy, now)
            if stage == customer.lifecycle_stage:
                continue
            moved[customer.pk] = stage
            specs.append(
                _change_spec(
                    tenant_id, customer.pk, customer.owner_id, customer.lifecycle_stage, stage, now
                )
            )
        by_stage: dict[str, list[int]] = {}
        for customer_id, stage in moved.items():
            by_stage.setdefault(stage, []).append(customer_id)
        for stage, stage_ids in by_stage.items():
            Customer.objects.for_tenant(tenant_id).filter(pk__in=stage_ids).update(
                lifecycle_stage=stage, lifecycle_changed_at=now
            )
        if specs:
            record_events(tenant_id, specs)
    return moved


def touch_interaction(tenant: Any, customer_id: int, at: datetime) -> bool:
    """Move ``last_interaction_at`` forward to ``at`` (never back); whether it moved."""
    tenant_id = getattr(tenant, "pk", tenant)
    at = min(at, timezone.now())
    return bool(
        Customer.objects.for_tenant(tenant_id)
        .filter(pk=customer_id)
        .filter(Q(last_interaction_at__isnull=True) | Q(last_interaction_at__lt=at))
        .update(last_interaction_at=at)
    )


def catch_up_interactions(tenant: Any, *, since: datetime) -> int:
    """Set-based: move ``last_interaction_at`` to the newest interaction event recorded since
    ``since`` (covers types a tenant configured that no handler subscribes to, and handlers
    lost to a crash). One UPDATE with a correlated sub-query; returns the rows moved."""
    tenant_id = getattr(tenant, "pk", tenant)
    types = interaction_types(policy_for(tenant_id))
    now = timezone.now()
    interactions = Event.objects.for_tenant(tenant_id).filter(
        type__in=types, recorded_at__gte=since, occurred_at__lte=now
    )
    newest = Subquery(
        interactions.filter(customer_id=OuterRef("pk"))
        .order_by()
        .values("customer_id")
        .annotate(newest=Max("occurred_at"))
        .values("newest")[:1]
    )
    touched = interactions.exclude(customer_id=None).values("customer_id")
    customers = Customer.objects.for_tenant(tenant_id).filter(pk__in=touched)
    stale = customers.alias(newest=newest).filter(
        Q(last_interaction_at__isnull=True) | Q(last_interaction_at__lt=newest)
    )
    return stale.update(last_interaction_at=newest)


def recompute_tenant_stages(tenant_id: int) -> dict[str, int]:
    """Catch up interactions of the last days, then recompute every stage of one tenant."""
    catch_up_interactions(tenant_id, since=timezone.now() - timedelta(days=CATCH_UP_DAYS))
    return recompute_stages(tenant_id)


@db_task()
def recompute_stages_task(tenant_id: int) -> dict[str, int]:
    """One tenant's stages, queued (after its rules changed, or on request)."""
    return recompute_tenant_stages(tenant_id)


@db_periodic_task(crontab(hour="3", minute="20"))
def recompute_lifecycle_stages() -> dict[int, dict[str, int]]:
    """Daily: every active tenant's stages (silence grows with time, not with events)."""
    from siyu.tenancy.models import Tenant

    return {
        tenant_id: recompute_tenant_stages(tenant_id)
        for tenant_id in Tenant.objects.filter(is_active=True).values_list("pk", flat=True)
    }


# --- handlers ----------------------------------------------------------------------------------
# Bulk back-fills (the WeCom sync) record thousands of events at once; the daily task catches
# their interactions and stages up set-based, rather than one customer per event here.
BULK_SOURCES = frozenset({"sync"})


@handles(*SUBSCRIBED_TYPES, queued=False)
def on_interaction(event: Event) -> None:
    """An interaction moves ``last_interaction_at`` and may wake a silent customer up."""
    if event.customer_id is None or event.source in BULK_SOURCES:
        return
    if event.type not in interaction_types(policy_for(event.tenant_id)):
        return
    if touch_interaction(event.tenant_id, event.customer_id, event.occurred_at):
        recompute_customer(event.tenant_id, event.customer_id)


@handles(*STATUS_TYPES, queued=False, batched=True)
def on_status_change(batch: list[Event]) -> None:
    """Losing the last friendship churns a customer; a (re-)add brings them back.

    Batched: a new friend arrives as ``customer.added`` and ``follow.added`` together, and
    their customer is recomputed once.
    """
    by_tenant: dict[int, set[int]] = {}
    for event in batch:
        if event.customer_id is None:
            continue
        if event.source in BULK_SOURCES and event.type != "customer.lost":
            continue  # a back-filled add: the daily recompute places it
        by_tenant.setdefault(event.tenant_id, set()).add(event.customer_id)
    for tenant_id, customer_ids in by_tenant.items():
        recompute_customers(tenant_id, customer_ids)
