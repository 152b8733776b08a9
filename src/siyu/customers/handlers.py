"""What the customers domain does when events arrive (discovered by ``siyu.core.apps``).

Each handler runs after the recording transaction commits, at most once per event
(``siyu.core.events.run_handler``), and is idempotent on its own as well (unique alert per
ended friendship, tasks keyed by their source, merges refused twice), so redelivery is safe.
"""

from __future__ import annotations

from siyu.core.events import handles
from siyu.core.models import Event
from siyu.customers import churn, events, handover, merge


# --- churn alerts ------------------------------------------------------------------------------
@handles(events.FOLLOW_DELETED_BY_CUSTOMER, events.FOLLOW_DELETED_BY_STAFF)
def raise_churn_alert(event: Event) -> None:
    """A friendship ended: a churn alert (and win-back tasks when the customer ended it)."""
    churn.alert_for_deletion(event)


def _re_add(event: Event) -> bool:
    """A customer's first friendship ever cannot have churn alerts to win back."""
    return not (event.payload or {}).get("first_for_customer")


def _by_transfer(event: Event) -> bool:
    return handover.is_takeover_add(event)


@handles(events.FOLLOW_ADDED, when=_re_add)
def recover_churn_alerts_on_re_add(event: Event) -> None:
    """The customer and the staff are friends again: that staff's open alerts are won back."""
    if event.customer_id and event.staff_id:
        churn.recover_alerts(
            event.tenant_id, event.customer_id, at=event.occurred_at, staff_id=event.staff_id
        )


@handles(events.CUSTOMER_RETURNED)
def recover_churn_alerts_on_return(event: Event) -> None:
    """A lost customer added a staff again: the brand has them back, every alert recovers."""
    if event.customer_id:
        churn.recover_alerts(event.tenant_id, event.customer_id, at=event.occurred_at)


# --- hand-over ---------------------------------------------------------------------------------
@handles(events.FOLLOW_ADDED, when=_by_transfer)
def settle_handover_on_takeover_friendship(event: Event) -> None:
    """WeCom's add of the takeover staff (add way 202) arrived before the results poll."""
    handover.takeover_followed(event)


@handles("staff.departed")
def remind_leader_to_hand_over(event: Event) -> None:
    handover.remind_leader_of_departure(event)


# --- dedupe ------------------------------------------------------------------------------------
@handles(events.CUSTOMER_ADDED, queued=False, batched=True)
def merge_new_customer_with_known_unionid(batch: list[Event]) -> None:
    """A new customer whose unionid is already known is the same person: one record.

    In-process and batched: one look-up for all the new customers dispatched together, and
    a merge is rare; a task per new friend would cost more."""
    by_tenant: dict[int, list[int]] = {}
    for event in batch:
        by_tenant.setdefault(event.tenant_id, []).append(event.customer_id)
    for tenant_id, customer_ids in by_tenant.items():
        merge.auto_merge_on_unionids(tenant_id, customer_ids)


@handles(events.CUSTOMER_UPDATED)
def merge_when_unionid_appears(event: Event) -> None:
    """WeCom may give a unionid only later (after the customer's authorisation)."""
    if "unionid" in ((event.payload or {}).get("changes") or {}):
        merge.auto_merge_on_unionid(event.tenant_id, event.customer_id)
