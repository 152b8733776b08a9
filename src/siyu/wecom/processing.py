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

from django.db.models import F
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


# A batch processor takes the messages of consecutive callbacks of one tenant and kind and
# returns, for each, whether it applied something — or None: "process this one alone".
BatchProcessor = Callable[[Tenant, list[dict[str, Any]]], list[bool | None]]
_batch_processors: dict[tuple[str, str], BatchProcessor] = {}


def processes_together(event: str, *change_types: str) -> Callable[[BatchProcessor], Any]:
    """Register a batch processor: what WeCom sends in bursts (new friends when a poster
    goes viral) is applied with a few bulk statements instead of dozens per callback."""

    def register(function: BatchProcessor) -> BatchProcessor:
        for change_type in change_types:
            _batch_processors[(event, change_type)] = function
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


def process_many(inbox_ids: list[int]) -> dict[int, str]:
    """Process callbacks in the order given; runs of the same tenant and kind that have a
    batch processor go together. Returns each row's final status."""
    found = (
        CallbackInbox.objects.unscoped("process by id").select_related("tenant").in_bulk(inbox_ids)
    )
    statuses: dict[int, str] = {}
    run: list[CallbackInbox] = []
    for inbox_id in inbox_ids:
        row = found.get(inbox_id)
        if row is None:
            statuses[inbox_id] = "missing"
            continue
        if row.status in (CallbackInbox.Status.PROCESSED, CallbackInbox.Status.IGNORED):
            statuses[inbox_id] = row.status
            continue
        if run and _kind(run[-1]) != _kind(row):
            statuses.update(_process_run(run))
            run = []
        run.append(row)
    if run:
        statuses.update(_process_run(run))
    return statuses


def _kind(row: CallbackInbox) -> tuple[int, str, str]:
    return row.tenant_id, row.event, row.change_type


def _process_run(rows: list[CallbackInbox]) -> dict[int, str]:
    """Rows of one tenant and kind: together when there is a batch processor and more than
    one row; should the batch fail, each row alone (it is one transaction, so nothing of it
    stays; each row then fails or succeeds on its own)."""
    batch = _batch_processors.get((rows[0].event, rows[0].change_type))
    if batch is None or len(rows) == 1:
        return {row.pk: process(row.pk) for row in rows}
    try:
        with dispatching_together():
            outcomes = batch(rows[0].tenant, [row.payload for row in rows])
    except Exception:
        logger.exception("WeCom callbacks %s failed together; one at a time", _ids(rows))
        return {row.pk: process(row.pk) for row in rows}
    statuses: dict[int, str] = {}
    done: dict[str, list[int]] = {
        CallbackInbox.Status.PROCESSED: [],
        CallbackInbox.Status.IGNORED: [],
    }
    for row, applied in zip(rows, outcomes, strict=True):
        if applied is None:
            statuses[row.pk] = process(row.pk)
            continue
        status = CallbackInbox.Status.PROCESSED if applied else CallbackInbox.Status.IGNORED
        done[status].append(row.pk)
        statuses[row.pk] = status
    inbox = CallbackInbox.objects.for_tenant(rows[0].tenant_id)
    now = timezone.now()
    for status, ids in done.items():
        if ids:
            inbox.filter(pk__in=ids).update(
                status=status, attempts=F("attempts") + 1, processed_at=now, last_error=""
            )
    return statuses


def _ids(rows: list[CallbackInbox]) -> list[int]:
    return [row.pk for row in rows]


def rows_to_retry(*, older_than: timedelta) -> list[int]:
    """Pending rows whose task was lost, and failed rows with attempts left."""
    cutoff = timezone.now() - older_than
    rows = CallbackInbox.objects.unscoped("sweep of every tenant's inbox").filter(
        received_at__lte=cutoff, attempts__lt=MAX_ATTEMPTS
    )
    stuck = rows.filter(status__in=[CallbackInbox.Status.PENDING, CallbackInbox.Status.FAILED])
    return list(stuck.order_by("create_time", "id").values_list("id", flat=True)[:1000])
