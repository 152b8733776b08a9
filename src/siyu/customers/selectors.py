"""Read-only look-ups other domains may use (they never write the customers tables)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from siyu.customers.models import Customer


def customers_by_external_userid(
    tenant: Any, external_userids: Iterable[str]
) -> dict[str, Customer]:
    """The tenant's customers with these WeCom external_userids; unknown ids are left out."""
    wanted = {userid for userid in external_userids if userid}
    if not wanted:
        return {}
    return {
        customer.external_userid: customer
        for customer in Customer.objects.for_tenant(tenant).filter(external_userid__in=wanted)
    }


def customer_by_external_userid(tenant: Any, external_userid: str) -> Customer | None:
    return customers_by_external_userid(tenant, [external_userid]).get(external_userid)
