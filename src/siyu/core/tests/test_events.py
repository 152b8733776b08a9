"""Events are recorded once per idempotency key and handlers run after commit, once."""

import pytest
from django.db import transaction

from siyu.core import events
from siyu.core.errors import InvalidInput
from siyu.core.events import handles, record_event, redeliver_pending, run_handler
from siyu.core.models import AppendOnlyError, Event, HandlerRun

seen: list[tuple[int, str]] = []


@handles("test.happened", queued=True)
def remember_queued(event):
    seen.append((event.pk, "queued"))


@handles("test.happened", queued=False)
def remember_inline(event):
    seen.append((event.pk, "inline"))


@handles("test.flaky")
def fail_once(event):
    if not any(kind == "flaky" for _, kind in seen):
        seen.append((event.pk, "flaky"))
        raise RuntimeError("first attempt fails")
    seen.append((event.pk, "recovered"))


@pytest.fixture(autouse=True)
def _clear_seen():
    seen.clear()


def test_duplicate_idempotency_key_records_one_event(tenant):
    first, created = record_event(tenant, "order.paid", key="order:42", payload={"fen": 9900})
    again, created_again = record_event(tenant, "order.paid", key="order:42", payload={"fen": 1})
    assert created and not created_again
    assert again.pk == first.pk
    assert Event.objects.for_tenant(tenant).filter(type="order.paid").count() == 1
    assert Event.objects.for_tenant(tenant).get(type="order.paid").payload == {"fen": 9900}


def test_same_key_in_two_tenants_is_two_events(tenant, other_tenant):
    record_event(tenant, "order.paid", key="order:1")
    record_event(other_tenant, "order.paid", key="order:1")
    assert Event.objects.unscoped("test").filter(idempotency_key="order:1").count() == 2


def test_handlers_run_after_commit_not_before(tenant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            event, _ = record_event(tenant, "test.happened", key="k1")
            assert seen == []
    assert sorted(seen) == sorted([(event.pk, "queued"), (event.pk, "inline")])


def test_a_rolled_back_change_records_no_event_and_runs_no_handler(
    tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ZeroDivisionError):
        with transaction.atomic():
            record_event(tenant, "test.happened", key="k2")
            1 / 0  # noqa: B018
    assert seen == []
    assert not Event.objects.for_tenant(tenant).filter(type="test.happened").exists()


def test_a_duplicate_event_does_not_run_handlers_again(tenant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        record_event(tenant, "test.happened", key="k3")
    with django_capture_on_commit_callbacks(execute=True):
        record_event(tenant, "test.happened", key="k3")
    assert len(seen) == 2


def test_a_handler_runs_to_completion_once(tenant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event, _ = record_event(tenant, "test.happened", key="k4")
    name = f"{remember_queued.__module__}.{remember_queued.__qualname__}"
    assert run_handler(event.pk, name) is True
    assert seen.count((event.pk, "queued")) == 1
    run = HandlerRun.objects.for_tenant(tenant).get(event=event, handler=name)
    assert run.status == HandlerRun.Status.DONE and run.attempts == 1


def test_the_sweep_redelivers_a_failed_handler(tenant, django_capture_on_commit_callbacks):
    from datetime import timedelta

    with django_capture_on_commit_callbacks(execute=True):
        event, _ = record_event(tenant, "test.flaky", key="k5")
    name = f"{fail_once.__module__}.{fail_once.__qualname__}"
    run = HandlerRun.objects.for_tenant(tenant).get(event=event, handler=name)
    assert run.status == HandlerRun.Status.FAILED and "first attempt" in run.last_error
    assert redeliver_pending(older_than=timedelta(0), within=timedelta(hours=1)) >= 1
    run.refresh_from_db()
    assert run.status == HandlerRun.Status.DONE and run.attempts == 2
    assert (event.pk, "recovered") in seen


def test_events_are_append_only(tenant):
    event, _ = record_event(tenant, "order.paid", key="k6")
    event.payload = {"changed": True}
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        Event.objects.for_tenant(tenant).update(type="x")
    with pytest.raises(AppendOnlyError):
        event.delete()


@pytest.mark.parametrize(
    ("event_type", "key"),
    [("", "k"), ("has space", "k"), ("x" * 81, "k"), ("ok.type", "   "), ("ok.type", "k" * 201)],
)
def test_bad_event_input_is_rejected(tenant, event_type, key):
    with pytest.raises(InvalidInput):
        record_event(tenant, event_type, key=key)


def test_registry_lists_handlers_by_type():
    names = [spec.name for spec in events.handlers_for("test.happened")]
    assert any(name.endswith("remember_queued") for name in names)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_with_one_key_record_one_event():
    """Two callbacks delivering the same fact at once (WeCom retries after 5 s) race."""
    import threading

    from siyu.testing.factories import TenantFactory

    tenant = TenantFactory()
    barrier = threading.Barrier(4)
    results, errors = [], []

    def deliver():
        from django.db import connections

        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                results.append(record_event(tenant, "order.paid", key="race:1"))
        except Exception as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert len({event.pk for event, _ in results}) == 1
    assert Event.objects.for_tenant(tenant).filter(idempotency_key="race:1").count() == 1
