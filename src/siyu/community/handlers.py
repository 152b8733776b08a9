"""What the community domain does when other domains' events arrive."""

from __future__ import annotations

from siyu.community import services
from siyu.core.events import handles
from siyu.core.models import Event


@handles("customer.added", queued=False)
def link_new_customer_to_group_memberships(event: Event) -> None:
    """A customer who was already in groups before anybody added them gets linked.

    In-process: one UPDATE, cheaper than the task that would carry it."""
    external_userid = (event.payload or {}).get("external_userid")
    if external_userid:
        services.link_customer_memberships(event.tenant_id, external_userid)
