"""Read-only look-ups other domains may use (they never write the customers tables)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from siyu.customers.models import Customer


def customers_by_external_userid(
    tenant: Any, external_userids: Iterable[str]
) -> dict[str, Customer]:
    """The tenant's customers with these WeCom external_userids; unknown ids are left out.

    A merged record answers with the customer it was merged into (``current_customer``).
    """
    wanted = {userid for userid in external_userids if userid}
    if not wanted:
        return {}
    return {
        customer.external_userid: current_customer(customer)
        for customer in Customer.objects.for_tenant(tenant)
        .filter(external_userid__in=wanted)
        .select_related("merged_into")
    }


def current_customer(customer: Customer) -> Customer:
    """The record a customer lives on: itself, or the one it was merged into.

    Why: WeCom keeps sending a merged record's external_userid (callbacks, group members,
    transfer results); what happens to it belongs to the survivor.
    """
    seen = {customer.pk}
    while customer.merged_into_id is not None and customer.merged_into_id not in seen:
        seen.add(customer.merged_into_id)
        customer = customer.merged_into
    return customer


def customer_by_external_userid(tenant: Any, external_userid: str) -> Customer | None:
    return customers_by_external_userid(tenant, [external_userid]).get(external_userid)
