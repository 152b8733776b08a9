"""Which customer bought: the shop's buyer matched to one of the tenant's customers.

In order of trust: the WeCom external_userid (the shop knows it when the buyer came through a
staff's link or the WeCom sidebar), the WeChat unionid (a mini-program shop knows it), then
the phone number (the delivery phone). A phone shared by several live customers matches
nobody: guessing would put a purchase on the wrong person's timeline. A merged record
answers with the customer it was merged into.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Q

from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.customers.selectors import current_customer


def customer_for(tenant: Any, order: Order) -> Customer | None:
    """The customer the order's buyer is, or None."""
    customers = Customer.objects.for_tenant(tenant).select_related("merged_into")
    if order.buyer_external_userid:
        found = customers.filter(external_userid=order.buyer_external_userid).first()
        if found is not None:
            return current_customer(found)
    if order.buyer_unionid:
        found = _only(customers.filter(unionid=order.buyer_unionid))
        if found is not None:
            return found
    if order.buyer_phone_hash:
        return _only(customers.filter(phone_hash=order.buyer_phone_hash))
    return None


def _only(candidates: Any) -> Customer | None:
    """The one live customer among the candidates (merged records count as their survivor)."""
    live = {current_customer(customer).pk: current_customer(customer) for customer in candidates}
    return next(iter(live.values())) if len(live) == 1 else None


def unmatched_orders_of(
    tenant: Any, customer_ids: list[int]
) -> Iterator[tuple[Customer, list[Order]]]:
    """For each customer, the orders nobody was matched to that name them as the buyer."""
    customers = Customer.objects.for_tenant(tenant).filter(
        pk__in=customer_ids, merged_into__isnull=True
    )
    orders = Order.objects.for_tenant(tenant).filter(customer__isnull=True)
    for customer in customers:
        names = Q()
        if customer.external_userid:
            names |= Q(buyer_external_userid=customer.external_userid)
        if customer.unionid:
            names |= Q(buyer_unionid=customer.unionid)
        if customer.phone_hash:
            names |= Q(buyer_phone_hash=customer.phone_hash)
        if not names:
            continue
        found = [order for order in orders.filter(names) if customer_for(tenant, order) == customer]
        if found:
            yield customer, found
