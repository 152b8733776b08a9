"""Events committed together are dispatched together: in-process handlers in one
transaction, queued ones in one task; ``batched`` handlers see all their events at once and
``when`` keeps a handler from events it has nothing to do for — without losing the
at-most-once guarantee or the sweep's redelivery."""

from datetime import timedelta

import pytest
from django.db import transaction

from siyu.core import tasks
from siyu.core.events import (
    dispatching_together,
    handles,
    record_event,
    redeliver_pending,
    run_handlers_of,
)
from siyu.core.models import HandlerRun

# Real commits: on-commit hooks must fire inside the ``dispatching_together`` block.
pytestmark = pytest.mark.django_db(transaction=True)

calls: list[tuple[str, list[int]]] = []


@handles("together.a", "together.b", queued=False, batched=True)
def batched_inline(batch):
    calls.append(("batched", [event.pk for event in batch]))


@handles("together.a", "together.b")
def queued_one(event):
    calls.append(("queued", [event.pk]))


@handles("together.a", queued=False, when=lambda event: event.payload.get("interesting"))
def only_when_interesting(event):
    calls.append(("interesting", [event.pk]))


@handles("together.broken", queued=False)
def broken_inline(event):
    calls.append(("broken", [event.pk]))
    if len([c for c in calls if c[0] == "broken"]) == 1:
        raise RuntimeError("first run fails")


@handles("together.broken", queued=False)
def fine_inline(event):
    calls.append(("fine", [event.pk]))


def name(function) -> str:
    return f"{function.__module__}.{function.__qualname__}"


@pytest.fixture(autouse=True)
def _clear():
    calls.clear()


@pytest.fixture
def tasks_sent(monkeypatch):
    """Every ``run_handlers_of_events`` task enqueued (and then run, as the worker would)."""
    sent = []
    real = tasks.run_handlers_of_events

    def spy(work):
        sent.append(work)
        return real(work)

    monkeypatch.setattr(tasks, "run_handlers_of_events", spy)
    return sent


def record_two(tenant, *, interesting: bool = False):
    before = len(calls)
    with dispatching_together():
        with transaction.atomic():
            a, _ = record_event(tenant, "together.a", payload={"interesting": interesting})
            b, _ = record_event(tenant, "together.b")
        assert len(calls) == before  # committed, but waiting for the end of the block
    return a, b


def test_events_of_one_block_go_together(tenant, tasks_sent):
    a, b = record_two(tenant)
    # one call of the batched handler for both events, one task for both queued handlers
    assert ("batched", [a.pk, b.pk]) in calls
    assert len(tasks_sent) == 1
    assert sorted(tasks_sent[0]) == sorted([[a.pk, [name(queued_one)]], [b.pk, [name(queued_one)]]])
    assert calls.count(("queued", [a.pk])) == 1 and calls.count(("queued", [b.pk])) == 1
    runs = HandlerRun.objects.for_tenant(tenant).filter(status=HandlerRun.Status.DONE)
    assert runs.filter(handler=name(batched_inline)).count() == 2
    assert runs.filter(handler=name(queued_one)).count() == 2


def test_when_keeps_a_handler_from_events_it_has_nothing_to_do_for(tenant, tasks_sent):
    plain, _ = record_two(tenant, interesting=False)
    interesting, _ = record_two(tenant, interesting=True)
    assert ("interesting", [interesting.pk]) in calls
    assert ("interesting", [plain.pk]) not in calls
    runs = HandlerRun.objects.for_tenant(tenant).filter(handler=name(only_when_interesting))
    assert list(runs.values_list("event_id", flat=True)) == [interesting.pk]
    # and the sweep does not take the skipped event for a lost one
    tasks_sent.clear()
    assert redeliver_pending(older_than=timedelta(0), within=timedelta(hours=1)) == 0
    assert tasks_sent == []


def test_a_failing_handler_keeps_the_others_and_is_redelivered(tenant):
    with dispatching_together():
        event, _ = record_event(tenant, "together.broken")
    runs = HandlerRun.objects.for_tenant(tenant).filter(event=event)
    assert runs.get(handler=name(fine_inline)).status == HandlerRun.Status.DONE
    failed = runs.get(handler=name(broken_inline))
    assert failed.status == HandlerRun.Status.FAILED and "first run fails" in failed.last_error
    assert redeliver_pending(older_than=timedelta(0), within=timedelta(hours=1)) == 1
    failed.refresh_from_db()
    assert failed.status == HandlerRun.Status.DONE and failed.attempts == 2
    assert calls.count(("fine", [event.pk])) == 1  # the one that worked did not run again


def test_a_redelivered_task_runs_nothing_twice(tenant):
    a, b = record_two(tenant)
    calls.clear()
    run_handlers_of([[a.pk, [name(queued_one)]], [b.pk, [name(queued_one), "no.such.handler"]]])
    run_handlers_of([[999_999, [name(queued_one)]]])  # an event that is gone: skipped
    assert calls == []
    assert HandlerRun.objects.for_tenant(tenant).filter(handler=name(queued_one)).count() == 2
