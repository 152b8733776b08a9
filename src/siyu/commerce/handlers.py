"""What the commerce domain does when other domains' events arrive.

A buyer who becomes a customer after buying (adds a staff, or the customer record learns
their unionid or phone) is linked to their earlier orders, whose events then go on their
timeline; a merge moves the duplicate's orders to the survivor.
"""

from __future__ import annotations

from siyu.commerce import services
from siyu.core.events import handles
from siyu.core.models import Event
from siyu.customers import events as customer_events

CUSTOMER_MERGED = "customer.merged"
PROFILE_UPDATED = "customer.profile_updated"


def _names_the_buyer(event: Event) -> bool:
    """An update that may make an unmatched order's buyer recognisable."""
    changes = (event.payload or {}).get("changes") or {}
    return bool({"unionid", "phone", "phone_verified"} & set(changes))


@handles(customer_events.CUSTOMER_ADDED, queued=False, batched=True)
def link_orders_of_new_customers(batch: list[Event]) -> None:
    """In process, with the other handlers of the callback batch: a queued task per batch of
    new friends cost the callback pipeline more than this one query when nothing waits."""
    _link(batch)


@handles(customer_events.CUSTOMER_UPDATED, PROFILE_UPDATED, when=_names_the_buyer)
def link_orders_of_recognised_customer(event: Event) -> None:
    _link([event])


def _link(batch: list[Event]) -> None:
    by_tenant: dict[int, list[int]] = {}
    for event in batch:
        if event.customer_id:
            by_tenant.setdefault(event.tenant_id, []).append(event.customer_id)
    for tenant_id, customer_ids in by_tenant.items():
        services.link_orders(tenant_id, customer_ids)


@handles(CUSTOMER_MERGED, queued=False)
def move_orders_of_merged_customer(event: Event) -> None:
    duplicate = (event.payload or {}).get("merged_customer_id")
    if duplicate and event.customer_id:
        services.move_orders(
            event.tenant_id, from_customer_id=int(duplicate), to_customer_id=event.customer_id
        )
