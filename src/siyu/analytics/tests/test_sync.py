"""The columnar copy: incremental, versioned, compacted, one writer, rebuilt from nothing."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest
from django.utils import timezone

from siyu.analytics import store as store_module
from siyu.analytics.engine import DuckDBEngine
from siyu.analytics.store import ColumnarStore, WriterBusy
from siyu.analytics.sync import rebuild, sync
from siyu.commerce import services as commerce
from siyu.core.events import record_event
from siyu.core.models import Event
from siyu.customers.models import Customer
from siyu.testing.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(tmp_path):
    return ColumnarStore(tmp_path / "analytics")


def count(store, tenant, table: str) -> int:
    return DuckDBEngine(store).rows(tenant.pk, f"SELECT count(*) FROM {table}")[0][0]


def test_a_second_sync_copies_only_what_is_new(store, tenant):
    staff = StaffFactory(tenant=tenant, wecom_userid="s1")
    customer = CustomerFactory(tenant=tenant, staff=staff)
    first = sync(store)
    assert first.events >= 2 and first.customers == 1
    assert sync(store).events == 0
    record_event(tenant, "message.received", customer_id=customer.pk, key="m1")
    third = sync(store)
    assert (third.events, third.customers) == (1, 1)  # the customer it names, again
    events = count(store, tenant, "events")
    assert events == first.events + 1
    assert count(store, tenant, "customers") == 1  # versions collapse to one row


def test_the_newest_version_of_a_row_wins(store, tenant):
    staff = StaffFactory(tenant=tenant, wecom_userid="s1")
    customer = CustomerFactory(tenant=tenant, staff=staff)
    sync(store)
    from siyu.customers import services as customer_services

    customer_services.remove_follow(
        tenant, customer=customer, staff=staff, by="customer", at=timezone.now()
    )
    sync(store)
    rows = DuckDBEngine(store).rows(tenant.pk, "SELECT id, status FROM customers")
    assert rows == [(customer.pk, Customer.Status.LOST)]


def test_orders_changed_since_the_last_sync_are_copied(store, tenant):
    order = commerce.OrderIn(
        shop_order_id="SO-1",
        status="created",
        updated_at=timezone.now() - timedelta(minutes=2),
        lines=(commerce.LineIn(sku="A", unit_price_fen=100),),
    )
    commerce.ingest_order(tenant, order)
    sync(store)
    paid = commerce.OrderIn(
        shop_order_id="SO-1",
        status="paid",
        updated_at=timezone.now() - timedelta(minutes=1),
        paid_at=timezone.now() - timedelta(minutes=1),
        lines=(commerce.LineIn(sku="A", unit_price_fen=100),),
    )
    commerce.ingest_order(tenant, paid)
    sync(store)
    rows = DuckDBEngine(store).rows(tenant.pk, "SELECT status, paid_fen FROM orders")
    assert rows == [("paid", 100)]


def test_an_event_committed_after_a_higher_id_is_caught(store, tenant):
    def event(event_id: int) -> None:
        Event.objects.create(
            tenant=tenant,
            id=event_id,
            type="message.received",
            idempotency_key=f"late:{event_id}",
            occurred_at=timezone.now(),
        )

    first, _ = record_event(tenant, "message.received", key="a")
    # id first + 2 commits while first + 1 is still being written by another transaction
    event(first.pk + 2)
    sync(store)
    assert str(first.pk + 1) in store.load_state().event_gaps
    event(first.pk + 1)  # ... which commits now
    sync(store)
    ids = {row[0] for row in DuckDBEngine(store).rows(tenant.pk, "SELECT id FROM events")}
    assert {first.pk, first.pk + 1, first.pk + 2} <= ids
    assert str(first.pk + 1) not in store.load_state().event_gaps


def test_one_writer_at_a_time(store, tenant):
    with store.writer(), pytest.raises(WriterBusy):
        sync(store)


def test_parts_are_compacted(store, tenant, monkeypatch):
    monkeypatch.setattr("siyu.analytics.sync.COMPACT_AFTER_PARTS", 3)
    for n in range(5):
        record_event(tenant, "message.received", key=f"k{n}")
        sync(store)
    assert len(store.parts("events", tenant.pk)) <= 3
    assert count(store, tenant, "events") == Event.objects.for_tenant(tenant).count()


def test_a_rebuild_copies_everything_again(store, tenant):
    record_event(tenant, "message.received", key="k")
    sync(store)
    report = rebuild(store)
    recorded = Event.objects.for_tenant(tenant).count()
    assert report.events == recorded and count(store, tenant, "events") == recorded


def test_readers_never_see_half_written_files(store, tenant):
    record_event(tenant, "message.received", key="k")
    sync(store)
    leftovers = list(store.root.rglob("*.tmp"))
    assert leftovers == []
    for part in store.parts("events", tenant.pk):
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{part}')").fetchall()
    assert {"customers", "orders"} == store_module.VERSIONED
