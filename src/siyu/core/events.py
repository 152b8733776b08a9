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
import uuid
from collections import defaultdict
from collections.abc import Callable
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


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    function: Callable[[Event], None]
    queued: bool


_registry: dict[str, list[HandlerSpec]] = defaultdict(list)
_by_name: dict[str, HandlerSpec] = {}


def handles(*event_types: str, queued: bool = True) -> Callable:
    """Subscribe the decorated ``function(event)`` to the given event types."""

    def register(function: Callable[[Event], None]) -> Callable[[Event], None]:
        spec = HandlerSpec(f"{function.__module__}.{function.__qualname__}", function, queued)
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
    """Run in-process handlers now and enqueue the queued ones (called after commit).

    The queued handlers of one event travel in one task: one queue write per event rather
    than one per handler (what keeps callback processing ahead of WeCom's bursts).
    """
    from siyu.core.tasks import run_event_handlers

    queued = []
    for spec in handlers_for(event.type):
        if spec.queued:
            queued.append(spec.name)
        else:
            run_handler(event.pk, spec.name)
    if queued:
        run_event_handlers(event.pk, queued)


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
            spec.function(event)
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
    from siyu.core.tasks import run_event_handlers

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
    enqueued = 0
    for event_id, event_type in events.values_list("id", "type").iterator():
        names = [s.name for s in handlers_for(event_type) if (event_id, s.name) not in finished]
        if names:
            run_event_handlers(event_id, names)
            enqueued += len(names)
    return enqueued
