"""The event bus: record facts in the writer's transaction, react to them after commit.

A service records an event with ``record_event`` inside its ``transaction.atomic()`` block, so
the event exists exactly when the change does. Other domains subscribe with
``@handles("type")`` in their ``handlers.py``; handlers run only after the transaction
commits, either in-process (``queued=False``, for quick bookkeeping) or on the task queue
(the default). Each (event, handler) pair runs to completion at most once (``HandlerRun``),
and a periodic sweep re-delivers events whose handlers were lost to a crash or failed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from siyu.core.errors import InvalidInput
from siyu.core.models import Event, HandlerRun

logger = logging.getLogger(__name__)

MAX_HANDLER_ATTEMPTS = 5
EVENT_TYPE_MAX_LENGTH = 80
IDEMPOTENCY_KEY_MAX_LENGTH = 200
REDELIVERY_CHUNK = 100  # events per redelivery task


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    function: Callable[[Any], None]
    queued: bool
    batched: bool = False
    when: Callable[[Event], bool] | None = None

    def applies_to(self, event: Event) -> bool:
        """Whether the handler has anything to do for this event (its ``when``, if any)."""
        return self.when is None or bool(self.when(event))


_registry: dict[str, list[HandlerSpec]] = defaultdict(list)
_by_name: dict[str, HandlerSpec] = {}


def handles(
    *event_types: str,
    queued: bool = True,
    batched: bool = False,
    when: Callable[[Event], bool] | None = None,
) -> Callable:
    """Subscribe the decorated ``function(event)`` to the given event types.

    ``batched=True``: the function takes a list of events instead, all those of one type
    set dispatched together (e.g. a callback's ``customer.added`` and ``follow.added``), so
    it can do once what the events share. ``when(event)``: a cheap test of the event alone
    (no queries); when false the handler is not run, queued or recorded for that event —
    why: most friendships are new, and a task per add that finds nothing to do is what
    would keep processing behind WeCom's bursts.
    """

    def register(function: Callable[[Any], None]) -> Callable[[Any], None]:
        name = f"{function.__module__}.{function.__qualname__}"
        spec = HandlerSpec(name, function, queued, batched, when)
        _by_name[spec.name] = spec
        for event_type in event_types:
            if spec not in _registry[event_type]:
                _registry[event_type].append(spec)
        return function

    return register


def handlers_for(event_type: str) -> list[HandlerSpec]:
    return list(_registry.get(event_type, ())) + list(_registry.get("*", ()))


def record_event(
    tenant: Any,
    event_type: str,
    *,
    key: str | None = None,
    staff: Any = None,
    customer_id: int | None = None,
    group_id: int | None = None,
    payload: dict[str, Any] | None = None,
    source: str = "system",
    occurred_at: datetime | None = None,
) -> tuple[Event, bool]:
    """Append an event unless one with the same idempotency key exists for the tenant.

    Returns ``(event, created)``. A duplicate key is a no-op that returns the first event,
    so a retried callback or task never records a fact twice. Handlers are dispatched once
    the surrounding transaction commits, and only for a new event.
    """
    _validate(event_type, key)
    key = key or f"auto:{uuid.uuid4()}"
    tenant_id = getattr(tenant, "pk", tenant)
    existing = Event.objects.for_tenant(tenant_id).filter(idempotency_key=key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            event = Event.objects.create(
                tenant_id=tenant_id,
                type=event_type,
                idempotency_key=key,
                staff=staff,
                customer_id=customer_id,
                group_id=group_id,
                payload=payload or {},
                source=source,
                occurred_at=occurred_at or timezone.now(),
            )
    except IntegrityError:
        # A concurrent writer won the race for this key: theirs is the event.
        return Event.objects.for_tenant(tenant_id).get(idempotency_key=key), False
    transaction.on_commit(lambda: dispatch(event))
    return event, True


@dataclass(frozen=True)
class EventSpec:
    """One event for ``record_events``: the arguments of ``record_event``."""

    type: str
    key: str | None = None
    staff: Any = None
    customer_id: int | None = None
    group_id: int | None = None
    payload: dict[str, Any] | None = None
    source: str = "system"
    occurred_at: datetime | None = None


def record_events(tenant: Any, specs: list[EventSpec]) -> list[tuple[Event, bool]]:
    """``record_event`` for many events at once: one look-up of their keys, one INSERT.

    Why: a bulk import records thousands of events, and one round trip each dominates its
    time. Same rules as ``record_event``: a key already recorded (or repeated in ``specs``)
    returns the first event and does nothing else; new events are dispatched once the
    surrounding transaction commits. Returns ``(event, created)`` in the order of ``specs``.
    """
    for spec in specs:
        _validate(spec.type, spec.key)
    tenant_id = getattr(tenant, "pk", tenant)
    keys = [spec.key or f"auto:{uuid.uuid4()}" for spec in specs]
    found = {
        event.idempotency_key: event
        for event in Event.objects.for_tenant(tenant_id).filter(idempotency_key__in=set(keys))
    }
    new: dict[str, Event] = {}
    for spec, key in zip(specs, keys, strict=True):
        if key in found or key in new:
            continue
        new[key] = Event(
            tenant_id=tenant_id,
            type=spec.type,
            idempotency_key=key,
            staff=spec.staff,
            customer_id=spec.customer_id,
            group_id=spec.group_id,
            payload=spec.payload or {},
            source=spec.source,
            occurred_at=spec.occurred_at or timezone.now(),
        )
    if new:
        try:
            with transaction.atomic():
                Event.objects.for_tenant(tenant_id).bulk_create(list(new.values()))
        except IntegrityError:
            # A concurrent writer recorded one of the keys meanwhile: one at a time, then.
            return [
                record_event(
                    tenant_id,
                    spec.type,
                    key=key,
                    staff=spec.staff,
                    customer_id=spec.customer_id,
                    group_id=spec.group_id,
                    payload=spec.payload,
                    source=spec.source,
                    occurred_at=spec.occurred_at,
                )
                for spec, key in zip(specs, keys, strict=True)
            ]
        for event in new.values():
            transaction.on_commit(partial(dispatch, event))
    results = []
    for key in keys:
        if key in found:
            results.append((found[key], False))
        else:
            results.append((new[key], True))
            found[key] = new[key]  # a repeated key in specs returns the first, not created
    return results


def _validate(event_type: str, key: str | None) -> None:
    if not event_type or len(event_type) > EVENT_TYPE_MAX_LENGTH or " " in event_type:
        raise InvalidInput(
            "Event type must be a dotted name without spaces, at most 80 characters",
            details={"type": event_type},
        )
    if key is not None and (not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH):
        raise InvalidInput(
            "Idempotency key must be 1 to 200 characters", details={"idempotency_key": key}
        )


def dispatch(event: Event) -> None:
    """Run the event's in-process handlers and enqueue its queued ones (called after commit).

    Inside ``dispatching_together`` the event waits for the end of the block instead, and
    goes with the others committed there.
    """
    pending = getattr(_together, "events", None)
    if pending is not None:
        pending.append(event)
        return
    dispatch_all([event])


_together = threading.local()


@contextmanager
def dispatching_together() -> Iterator[None]:
    """Dispatch the events committed inside the block together, at its end.

    Why: one WeCom callback commits several events (``customer.added`` and ``follow.added``
    for a new friend). Dispatched one by one, each costs a transaction for its in-process
    handlers and a queue write for its queued ones; together they cost one of each, which
    is what lets processing keep up with WeCom's bursts. Nested blocks join the outer one.
    """
    if getattr(_together, "events", None) is not None:
        yield
        return
    _together.events = []
    try:
        yield
    finally:
        events, _together.events = _together.events, None
        if events:
            dispatch_all(events)


def dispatch_all(events: list[Event]) -> None:
    """In-process handlers of all ``events`` now, in one transaction; their queued handlers
    in one task (one queue write however many events and handlers)."""
    from siyu.core.tasks import run_handlers_of_events

    inline = [
        (event, spec)
        for event in events
        for spec in handlers_for(event.type)
        if spec.applies_to(event)
    ]
    queued: dict[int, list[str]] = {}
    for event, spec in inline:
        if spec.queued:
            queued.setdefault(event.pk, []).append(spec.name)
    inline = [(event, spec) for event, spec in inline if not spec.queued]
    if inline:
        run_together(inline)
    if queued:
        try:
            run_handlers_of_events([[event_id, names] for event_id, names in queued.items()])
        except Exception:  # the queue is down: the redelivery sweep will enqueue them later
            logger.exception("Could not enqueue the handlers of events %s", list(queued))


def run_handlers_of(work: list[list[Any]]) -> None:
    """Run ``[[event_id, [handler names]], ...]`` (a queued task's load) together."""
    ids = [int(event_id) for event_id, _names in work]
    found = Event.objects.unscoped("run handlers by event id").in_bulk(ids)
    pairs = []
    for event_id, names in work:
        event = found.get(int(event_id))
        for name in names:
            spec = _by_name.get(name)
            if event is None or spec is None:
                logger.warning("No handler %s or event %s: skipped", name, event_id)
                continue
            pairs.append((event, spec))
    run_together(pairs)


def run_together(pairs: list[tuple[Event, HandlerSpec]]) -> None:
    """Run (event, handler) pairs, each at most once, in one transaction with one insert of
    their run records; each handler in its own savepoint, so one failing keeps the others.

    A pair that already has a run record (a retry, a redelivery) takes the careful path,
    ``run_handler``. Should a concurrent run record appear meanwhile, the insert fails,
    everything here rolls back (the handlers' effects with it) and each pair takes the
    careful path: at most once either way. A ``batched`` handler is called once with all
    its events of the batch.
    """
    if not pairs:
        return
    known = set(
        HandlerRun.objects.unscoped("run records of the events at hand")
        .filter(event__in={event.pk for event, _spec in pairs})
        .values_list("event_id", "handler")
    )
    fresh = [(e, s) for e, s in pairs if (e.pk, s.name) not in known]
    for event, spec in pairs:
        if (event.pk, spec.name) in known:
            run_handler(event.pk, spec.name)
    if not fresh:
        return
    failures: list[tuple[Event, HandlerSpec, Exception]] = []
    try:
        with transaction.atomic():
            done = []
            for spec, events in _by_handler(fresh):
                try:
                    with transaction.atomic():
                        _call(spec, events)
                except Exception as error:
                    logger.exception("Handler %s failed on events %s", spec.name, _ids(events))
                    failures.extend((event, spec, error) for event in events)
                    continue
                done.extend(_done_run(event, spec) for event in events)
            HandlerRun.objects.unscoped("run records of the events at hand").bulk_create(done)
    except IntegrityError:
        for event, spec in fresh:
            run_handler(event.pk, spec.name)
        return
    for event, spec, error in failures:
        _record_failure(event, spec.name, 0, error)


def _by_handler(pairs: list[tuple[Event, HandlerSpec]]) -> list[tuple[HandlerSpec, list[Event]]]:
    """Group the events by handler, a handler's events in order; the handlers in order."""
    grouped: dict[str, tuple[HandlerSpec, list[Event]]] = {}
    for event, spec in pairs:
        grouped.setdefault(spec.name, (spec, []))[1].append(event)
    result = []
    for spec, events in grouped.values():
        if spec.batched:
            result.append((spec, events))
        else:
            result.extend((spec, [event]) for event in events)
    return result


def _call(spec: HandlerSpec, events: list[Event]) -> None:
    if spec.batched:
        spec.function(events)
    else:
        (event,) = events
        spec.function(event)


def _done_run(event: Event, spec: HandlerSpec) -> HandlerRun:
    return HandlerRun(
        tenant_id=event.tenant_id,
        event=event,
        handler=spec.name,
        status=HandlerRun.Status.DONE,
        attempts=1,
        finished_at=timezone.now(),
    )


def _ids(events: list[Event]) -> list[int]:
    return [event.pk for event in events]


def run_handler(event_id: int, handler_name: str) -> bool:
    """Run one handler for one event at most once; return whether it is done.

    The handler's own writes, its run record and the ``done`` mark commit together in one
    transaction, so a crash between them cannot make the handler count as done without its
    effect (or vice versa), and a handler costs one commit.
    """
    spec = _by_name.get(handler_name)
    event = Event.objects.unscoped("run a handler by event id").filter(pk=event_id).first()
    if spec is None or event is None:
        logger.warning("No handler %s or event %s: skipped", handler_name, event_id)
        return False
    runs = HandlerRun.objects.for_tenant(event.tenant_id)
    attempts = 0
    try:
        with transaction.atomic():
            run, _created = runs.select_for_update().get_or_create(
                tenant_id=event.tenant_id, event=event, handler=handler_name
            )
            if run.status == HandlerRun.Status.DONE:
                return True
            attempts = run.attempts
            _call(spec, [event])
            runs.filter(pk=run.pk).update(
                status=HandlerRun.Status.DONE,
                attempts=attempts + 1,
                finished_at=timezone.now(),
                last_error="",
            )
        return True
    except Exception as error:
        logger.exception("Handler %s failed on event %s", handler_name, event_id)
        _record_failure(event, handler_name, attempts, error)
        return False


def _record_failure(event: Event, handler_name: str, attempts: int, error: Exception) -> None:
    """Keep the failure (outside the rolled-back transaction) for the redelivery sweep."""
    runs = HandlerRun.objects.for_tenant(event.tenant_id)
    message = f"{type(error).__name__}: {error}"[:2000]
    try:
        run, _created = runs.get_or_create(
            tenant_id=event.tenant_id, event=event, handler=handler_name
        )
    except IntegrityError:  # a concurrent run created it meanwhile
        run = runs.get(event=event, handler=handler_name)
    if run.status != HandlerRun.Status.DONE:
        runs.filter(pk=run.pk).update(
            status=HandlerRun.Status.FAILED,
            attempts=max(run.attempts, attempts) + 1,
            last_error=message,
        )


def redeliver_pending(*, older_than: timedelta, within: timedelta) -> int:
    """Re-enqueue handlers that never completed for recent events; return how many.

    Covers a process that died between commit and dispatch, and handlers that failed (up to
    ``MAX_HANDLER_ATTEMPTS``).
    """
    from siyu.core.tasks import run_handlers_of_events

    now = timezone.now()
    handled_types = [t for t, specs in _registry.items() if specs and t != "*"]
    events = Event.objects.unscoped("platform sweep over all tenants").filter(
        recorded_at__lte=now - older_than, recorded_at__gte=now - within
    )
    if not _registry.get("*"):
        events = events.filter(type__in=handled_types)
    finished = {
        (event_id, handler)
        for event_id, handler, status, attempts in HandlerRun.objects.unscoped(
            "platform sweep over all tenants"
        )
        .filter(event__in=events)
        .values_list("event_id", "handler", "status", "attempts")
        if status == HandlerRun.Status.DONE or attempts >= MAX_HANDLER_ATTEMPTS
    }
    enqueued, work = 0, []
    for event in events.iterator(chunk_size=500):
        names = [
            s.name
            for s in handlers_for(event.type)
            if (event.pk, s.name) not in finished and s.applies_to(event)
        ]
        if names:
            work.append([event.pk, names])
            enqueued += len(names)
        if len(work) >= REDELIVERY_CHUNK:
            run_handlers_of_events(work)
            work = []
    if work:
        run_handlers_of_events(work)
    return enqueued
