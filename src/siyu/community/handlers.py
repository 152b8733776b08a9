"""What the community domain does when other domains' events arrive."""

from __future__ import annotations

from siyu.community import services
from siyu.core.events import handles
from siyu.core.models import Event


@handles("customer.added", queued=False, batched=True)
def link_new_customer_to_group_memberships(batch: list[Event]) -> None:
    """Customers who were already in groups before anybody added them get linked.

    In-process and batched: one look-up for all the new customers dispatched together,
    cheaper than the task that would carry it."""
    by_tenant: dict[int, list[str]] = {}
    for event in batch:
        external_userid = (event.payload or {}).get("external_userid")
        if external_userid:
            by_tenant.setdefault(event.tenant_id, []).append(external_userid)
    for tenant_id, external_userids in by_tenant.items():
        services.link_customers_memberships(tenant_id, external_userids)
