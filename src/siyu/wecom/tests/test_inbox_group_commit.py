"""Callbacks arriving together are stored together: one transaction for a batch, each
acknowledged only once its row is committed, duplicates counted; a tenant's processing task
is queued only when none is waiting."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from siyu.testing.factories import TenantFactory
from siyu.wecom import callbacks, tasks
from siyu.wecom.callbacks import inbox_writer, store_callback
from siyu.wecom.models import CallbackInbox

pytestmark = pytest.mark.django_db(transaction=True)


def message(number: int) -> str:
    return (
        "<xml><Event><![CDATA[change_external_contact]]></Event>"
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
        f"<CreateTime>{1_700_000_000 + number}</CreateTime>"
        f"<ExternalUserID><![CDATA[wm{number:04d}]]></ExternalUserID></xml>"
    )


@pytest.fixture
def enqueued(monkeypatch):
    """The tenants whose processing task was queued (not run: this test is about storing)."""
    sent: list[int] = []
    monkeypatch.setattr(tasks, "process_tenant_callbacks", sent.append)
    return sent


@pytest.fixture
def first_write_held(monkeypatch):
    """Hold the first batch until ``release`` is set: the others must pile up behind it."""
    release = threading.Event()
    real = callbacks._write_batch
    calls = []

    def held(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            assert release.wait(timeout=10)
        real(batch)

    release.set()  # not before the test arms it (``release.clear()``)

    monkeypatch.setattr(callbacks, "_write_batch", held)
    return release, calls


def deliver_together(tenant, plaintexts: list[str], release: threading.Event) -> list:
    results: list = [None] * len(plaintexts)
    errors: list[BaseException] = []

    def deliver(index: int, plaintext: str) -> None:
        try:
            results[index] = store_callback(tenant, plaintext)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    first = threading.Thread(target=deliver, args=(0, plaintexts[0]))
    first.start()
    while not inbox_writer._writing:  # the first delivery is being written (and held)
        threading.Event().wait(0.005)
    others = [
        threading.Thread(target=deliver, args=(i, text))
        for i, text in enumerate(plaintexts)
        if i > 0
    ]
    for thread in others:
        thread.start()
    while len(inbox_writer._waiting) < len(others):  # everyone else queued behind it
        threading.Event().wait(0.005)
    assert all(result is None for result in results)  # nobody acknowledged before commit
    release.set()
    for thread in [first, *others]:
        thread.join(timeout=20)
    assert not errors
    return results


def test_callbacks_arriving_together_are_written_together(enqueued, first_write_held):
    release, batches = first_write_held
    tenant = TenantFactory()
    store_callback(tenant, message(0))  # delivered earlier: its redelivery below is counted
    assert enqueued == [tenant.pk]
    enqueued.clear()
    batches.clear()
    release.clear()
    plaintexts = [message(100), *[message(n) for n in range(1, 9)], message(3), message(0)]
    results = deliver_together(tenant, plaintexts, release)
    # two batches: the held one, then everybody who arrived meanwhile
    assert batches == [1, 10]
    rows = CallbackInbox.objects.for_tenant(tenant)
    assert rows.count() == 10  # 0, 1–8 and 100: each once
    assert rows.get(create_time=1_700_000_003).deliveries == 2
    assert rows.get(create_time=1_700_000_000).deliveries == 2
    stored = [row for row in results if row is not None]
    assert len(stored) == 9 and len({row.pk for row in stored}) == 9
    # the tenant's task queued for the earlier delivery has not started: it will take these
    # rows too, so neither batch queued another
    assert enqueued == []


def test_a_batch_spans_tenants(enqueued, first_write_held):
    release, batches = first_write_held
    one, two = TenantFactory(), TenantFactory()
    same = message(7)
    release.clear()
    results: list = []
    threads = []

    def deliver(tenant, text):
        try:
            results.append(store_callback(tenant, text))
        finally:
            connection.close()

    threads.append(threading.Thread(target=deliver, args=(one, message(1))))
    threads[0].start()
    while not inbox_writer._writing:
        threading.Event().wait(0.005)
    for tenant in (one, two):
        threads.append(threading.Thread(target=deliver, args=(tenant, same)))
        threads[-1].start()
    while len(inbox_writer._waiting) < 2:
        threading.Event().wait(0.005)
    release.set()
    for thread in threads:
        thread.join(timeout=20)
    # the same message for two tenants is two rows, one each
    assert batches == [1, 2]
    assert CallbackInbox.objects.for_tenant(one).count() == 2
    assert CallbackInbox.objects.for_tenant(two).count() == 1
    assert all(row is not None for row in results)
    assert sorted(enqueued) == sorted([one.pk, two.pk])  # each tenant's task, once


def test_a_failed_write_fails_every_callback_of_its_batch(monkeypatch, enqueued):
    tenant = TenantFactory()

    def broken(batch):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(callbacks, "_write_batch", broken)
    with pytest.raises(RuntimeError, match="database unavailable"):
        store_callback(tenant, message(1))
    assert not inbox_writer._writing and not inbox_writer._waiting  # the writer recovered
    assert not CallbackInbox.objects.for_tenant(tenant).exists()


def test_a_started_task_lets_the_next_callback_queue_another(enqueued):
    from siyu.wecom.processing import process_waiting

    tenant = TenantFactory()
    store_callback(tenant, message(1))
    store_callback(tenant, message(2))
    assert enqueued == [tenant.pk]  # the second found the first's task waiting
    # the task starts (nothing to process for an unconfigured corp: the rows fail), and
    # whatever arrives from then on queues the next one
    process_waiting(tenant.pk)
    store_callback(tenant, message(3))
    assert enqueued == [tenant.pk, tenant.pk]


def test_a_task_queued_long_ago_and_never_started_is_taken_for_lost(enqueued):
    from datetime import timedelta

    from django.utils import timezone

    from siyu.wecom.models import InboxSchedule
    from siyu.wecom.processing import QUEUED_TASK_TTL

    tenant = TenantFactory()
    store_callback(tenant, message(1))
    InboxSchedule.objects.for_tenant(tenant).update(
        task_queued_at=timezone.now() - QUEUED_TASK_TTL - timedelta(seconds=1)
    )
    store_callback(tenant, message(2))
    assert enqueued == [tenant.pk, tenant.pk]
