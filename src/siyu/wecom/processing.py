"""Turn stored WeCom callbacks into changes of Siyu's data, once each.

Processors register for an (Event, ChangeType) pair with ``@processes``; they call the
owning domains' services (customers, community, tenancy), which record the normalised
Siyu events. A processor returns whether it applied something; unknown callbacks are kept
and marked ``ignored``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from siyu.core.events import dispatching_together
from siyu.tenancy.models import Tenant
from siyu.wecom.models import CallbackInbox

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
Processor = Callable[[Tenant, dict[str, Any]], bool]
_processors: dict[tuple[str, str], Processor] = {}


def processes(event: str, *change_types: str) -> Callable[[Processor], Processor]:
    """Register a processor for a callback ``Event`` and its ``ChangeType`` values."""

    def register(function: Processor) -> Processor:
        for change_type in change_types or ("",):
            _processors[(event, change_type)] = function
        return function

    return register


def processor_for(event: str, change_type: str) -> Processor | None:
    return _processors.get((event, change_type)) or _processors.get((event, "*"))


def seen_at(message: dict[str, Any]) -> datetime:
    """WeCom's ``CreateTime`` of a callback: the clock that orders changes of one thing."""
    try:
        return datetime.fromtimestamp(int(message["CreateTime"]), tz=UTC)
    except (KeyError, TypeError, ValueError):
        return timezone.now()


def process(inbox_id: int) -> str:
    """Process one inbox row unless already done; return its final status."""
    row = CallbackInbox.objects.unscoped("process by id").filter(pk=inbox_id).first()
    if row is None:
        return "missing"
    if row.status in (CallbackInbox.Status.PROCESSED, CallbackInbox.Status.IGNORED):
        return row.status
    rows = CallbackInbox.objects.for_tenant(row.tenant_id)
    processor = processor_for(row.event, row.change_type)
    # No transaction around the processor: it calls WeCom (HTTP) and then services that are
    # each atomic and idempotent, so a second run of the same row changes nothing.
    try:
        with dispatching_together():  # a new friend's events: one handler transaction, one task
            applied = processor is not None and processor(row.tenant, row.payload)
    except Exception as error:
        logger.exception("WeCom callback %s (%s/%s) failed", row.pk, row.event, row.change_type)
        rows.filter(pk=row.pk).update(
            status=CallbackInbox.Status.FAILED,
            attempts=row.attempts + 1,
            last_error=f"{type(error).__name__}: {error}"[:2000],
        )
        return CallbackInbox.Status.FAILED
    status = CallbackInbox.Status.PROCESSED if applied else CallbackInbox.Status.IGNORED
    rows.filter(pk=row.pk).update(
        status=status, attempts=row.attempts + 1, processed_at=timezone.now(), last_error=""
    )
    return status


def rows_to_retry(*, older_than: timedelta) -> list[int]:
    """Pending rows whose task was lost, and failed rows with attempts left."""
    cutoff = timezone.now() - older_than
    rows = CallbackInbox.objects.unscoped("sweep of every tenant's inbox").filter(
        received_at__lte=cutoff, attempts__lt=MAX_ATTEMPTS
    )
    stuck = rows.filter(status__in=[CallbackInbox.Status.PENDING, CallbackInbox.Status.FAILED])
    return list(stuck.order_by("create_time", "id").values_list("id", flat=True)[:1000])
