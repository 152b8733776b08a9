"""Turn stored WeCom callbacks into changes of Siyu's data, once each.

Processors register for an (Event, ChangeType) pair with ``@processes``; they call the
owning domains' services (customers, community, tenancy), which record the normalised
Siyu events. A processor returns whether it applied something; unknown callbacks are kept
and marked ``ignored``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from siyu.core.events import dispatching_together
from siyu.tenancy.models import Tenant
from siyu.wecom.models import CallbackInbox, InboxSchedule

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
DRAIN = 50  # waiting callbacks a worker task takes along (see process_many)
# Callbacks applied in one transaction. Bigger batches cost less per callback but hold the
# write lock longer, and on SQLite every acknowledgement waits for it: 10 keeps the lock
# for tens of milliseconds.
BATCH = 10
CLAIM_TIMEOUT = timedelta(minutes=5)  # a claim this old belongs to a worker that died
# Rows one tenant's task processes before it queues the next round and lets the worker take
# other tenants' tasks.
TENANT_ROUND = 500
# A task queued longer ago than this and still not started is taken for lost: the next
# callback queues another (two tasks for one tenant only cost one idle claim).
QUEUED_TASK_TTL = timedelta(minutes=2)
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


def schedule_processing(tenant_ids: set[int]) -> list[int]:
    """Queue, once the current transaction commits, the processing task of each tenant that
    has none waiting; return those tenants. Called in the transaction that stores new
    callbacks, so that a task starting meanwhile either sees them or lets this one queue.

    The tenants' schedule rows are locked until the commit (PostgreSQL; SQLite serialises
    writers anyway): a task clears its mark before it looks for work, so a writer that saw
    the mark set commits its rows before that task looks.
    """
    if not tenant_ids:
        return []
    schedules = InboxSchedule.objects.unscoped("the inbox writer's batch spans tenants")
    marks = dict(
        schedules.select_for_update()
        .filter(tenant_id__in=tenant_ids)
        .order_by("tenant_id")  # one locking order: two writers never wait for each other
        .values_list("tenant_id", "task_queued_at")
    )
    missing = set(tenant_ids) - set(marks)
    if missing:
        schedules.bulk_create(
            [InboxSchedule(tenant_id=tenant_id) for tenant_id in missing], ignore_conflicts=True
        )
        marks.update(
            schedules.select_for_update()
            .filter(tenant_id__in=missing)
            .order_by("tenant_id")
            .values_list("tenant_id", "task_queued_at")
        )
    now = timezone.now()
    due = sorted(
        tenant_id
        for tenant_id, queued_at in marks.items()
        if queued_at is None or queued_at < now - QUEUED_TASK_TTL
    )
    if due:
        schedules.filter(tenant_id__in=due).update(task_queued_at=now)
        transaction.on_commit(lambda: _enqueue(due))
    return due


def _enqueue(tenant_ids: list[int]) -> None:
    from siyu.wecom.tasks import process_tenant_callbacks

    for tenant_id in tenant_ids:
        try:
            process_tenant_callbacks(tenant_id)
        except Exception:  # the rows are stored; the minute's sweep processes them
            logger.exception("could not queue the inbox task of tenant %s", tenant_id)


def process_waiting(tenant_id: int, *, limit: int = TENANT_ROUND) -> int:
    """Process the tenant's waiting callbacks, oldest first, ``DRAIN`` claimed at a time;
    return how many. After ``limit`` rows the next round is queued instead of kept here.

    The schedule mark is cleared first: callbacks stored from then on queue another task,
    those stored before are found by the claims below.
    """
    InboxSchedule.objects.for_tenant(tenant_id).update(task_queued_at=None)
    done = 0
    while done < limit:
        rows = _claim_waiting(tenant_id, uuid.uuid4().hex, min(DRAIN, limit - done))
        if not rows:
            return done
        _process_claimed(rows)
        done += len(rows)
    with transaction.atomic():
        schedule_processing({tenant_id})
    return done


def _claim_waiting(tenant_id: int, token: str, count: int) -> list[CallbackInbox]:
    """Claim the tenant's ``count`` oldest waiting rows that nobody has claimed."""
    pending = CallbackInbox.objects.for_tenant(tenant_id).filter(
        status=CallbackInbox.Status.PENDING
    )
    ids = list(pending.filter(claim="").order_by("id").values_list("pk", flat=True)[:count])
    if not ids:
        return []
    pending.filter(pk__in=ids, claim="").update(claim=token, claimed_at=timezone.now())
    return list(pending.select_related("tenant").filter(claim=token).order_by("id"))


def process_many(inbox_ids: list[int], *, drain: int = DRAIN) -> dict[int, str]:
    """Process callbacks in arrival order, taking up to ``drain`` more of the same tenants'
    waiting ones along; runs of the same tenant and kind with a batch processor go
    together. Returns the final status of each row it processed or found done.

    The task of one batch of stored callbacks, as queued before ``schedule_processing``
    (tasks already in a queue when Siyu is upgraded still run).
    """
    token = uuid.uuid4().hex
    rows = _claim(inbox_ids, token, drain)
    statuses: dict[int, str] = {}
    for row in _unclaimed_done(inbox_ids, rows):
        statuses[row.pk] = row.status
    statuses.update(_process_claimed(rows))
    return statuses


def _process_claimed(rows: list[CallbackInbox]) -> dict[int, str]:
    """Claimed rows in arrival order; runs of one tenant and kind go together."""
    statuses: dict[int, str] = {}
    run: list[CallbackInbox] = []
    for row in rows:
        if run and _kind(run[-1]) != _kind(row):
            statuses.update(_process_run(run))
            run = []
        run.append(row)
    if run:
        statuses.update(_process_run(run))
    return statuses


def _process_run(rows: list[CallbackInbox]) -> dict[int, str]:
    """Rows of one tenant and kind, at most ``BATCH`` at a time (see ``BATCH``)."""
    statuses: dict[int, str] = {}
    for start in range(0, len(rows), BATCH):
        statuses.update(_process_batch(rows[start : start + BATCH]))
    return statuses


def _claim(inbox_ids: list[int], token: str, drain: int) -> list[CallbackInbox]:
    """Claim the given rows still to do, and up to ``drain`` other waiting rows of their
    tenants (oldest first); the claimed rows, oldest first. A claim older than
    ``CLAIM_TIMEOUT`` (its worker died) can be taken over."""
    inbox = CallbackInbox.objects.unscoped("claim callbacks of the tenants at hand")
    now = timezone.now()
    free = Q(claim="") | Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    todo = [CallbackInbox.Status.PENDING, CallbackInbox.Status.FAILED]
    tenants = set(
        inbox.filter(pk__in=inbox_ids, status__in=todo)
        .filter(free)
        .values_list("tenant_id", flat=True)
    )
    waiting = []
    if tenants and drain:
        waiting = list(
            inbox.filter(tenant_id__in=tenants, status=CallbackInbox.Status.PENDING, claim="")
            .exclude(pk__in=inbox_ids)
            .order_by("id")
            .values_list("pk", flat=True)[:drain]
        )
    if not tenants:
        return []
    inbox.filter(pk__in=[*inbox_ids, *waiting], status__in=todo).filter(free).update(
        claim=token, claimed_at=now
    )
    return list(inbox.select_related("tenant").filter(claim=token).order_by("id"))


def _unclaimed_done(inbox_ids: list[int], claimed: list[CallbackInbox]) -> list[CallbackInbox]:
    """The given rows this task did not claim because they are done (for the statuses)."""
    mine = {row.pk for row in claimed}
    rest = [pk for pk in inbox_ids if pk not in mine]
    if not rest:
        return []
    done = [CallbackInbox.Status.PROCESSED, CallbackInbox.Status.IGNORED]
    return list(
        CallbackInbox.objects.unscoped("statuses of rows done").filter(pk__in=rest, status__in=done)
    )


def _kind(row: CallbackInbox) -> tuple[int, str, str]:
    return row.tenant_id, row.event, row.change_type


def _process_batch(rows: list[CallbackInbox]) -> dict[int, str]:
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
    now = timezone.now()
    cutoff = now - older_than
    rows = CallbackInbox.objects.unscoped("sweep of every tenant's inbox").filter(
        received_at__lte=cutoff, attempts__lt=MAX_ATTEMPTS
    )
    # not those a worker is processing right now
    rows = rows.filter(Q(claim="") | Q(claimed_at__lt=now - CLAIM_TIMEOUT) | Q(status="failed"))
    stuck = rows.filter(status__in=[CallbackInbox.Status.PENDING, CallbackInbox.Status.FAILED])
    return list(stuck.order_by("create_time", "id").values_list("id", flat=True)[:1000])
