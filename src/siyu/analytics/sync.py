"""Keeping the columnar copy current from the database (ADR 0006).

One sync, under the writer lock:

1. **Events** after the watermark, in id order, up to ``batch`` of them; ids skipped below
   the newest copied one are remembered as gaps (a transaction that took the id is still
   open, or rolled back) and read again on the next syncs until found or ``GAP_PATIENCE``
   old. Events are append-only: parts are only ever added.
2. **Customers** the new events name (added, updated, lost, stage changed, merged ...) are
   copied again, as new versions; every ``FULL_REFRESH_SECONDS`` all customers are, which
   catches changes that recorded no event.
3. **Orders** whose ``updated_at`` moved since the last sync (with ``OVERLAP`` for clocks
   and late commits).
4. A tenant's table with more than ``COMPACT_AFTER_PARTS`` parts is compacted.

Running it twice in a row copies nothing the second time (except the overlap's orders, whose
newest version is the same).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from siyu.analytics.store import COMPACT_AFTER_PARTS, SCHEMAS, ColumnarStore, SyncState
from siyu.commerce.models import Order
from siyu.core.models import Event
from siyu.customers.models import Customer

BATCH = 200_000
GAP_PATIENCE = 120.0  # seconds a missing id is waited for
MAX_GAPS = 10_000
FULL_REFRESH_SECONDS = 600.0
OVERLAP = timedelta(seconds=5)
CHUNK = 5_000  # ids per IN (...) when re-reading customers


@dataclass
class SyncReport:
    events: int = 0
    customers: int = 0
    orders: int = 0
    compacted: int = 0
    full_refresh: bool = False
    seconds: float = 0.0
    tenants: set[int] = field(default_factory=set)


def sync(
    store: ColumnarStore | None = None, *, batch: int = BATCH, full: bool = False
) -> SyncReport:
    """Bring the copy up to date once (see the module docstring); ``full`` re-copies every
    customer. Raises ``WriterBusy`` when another process is syncing."""
    store = store or ColumnarStore()
    started = time.perf_counter()
    report = SyncReport()
    with store.writer():
        state = store.load_state()
        seq = state.seq + 1
        changed_customers = _copy_events(store, state, seq, batch, report)
        refresh_all = full or time.time() - state.customers_full_refresh_at > FULL_REFRESH_SECONDS
        _copy_customers(store, seq, None if refresh_all else changed_customers, report)
        if refresh_all:
            state.customers_full_refresh_at = time.time()
            report.full_refresh = True
        _copy_orders(store, state, seq, report)
        if report.events or report.customers or report.orders:
            state.seq = seq
        store.save_state(state)
        report.compacted = _compact(store, report.tenants)
    report.seconds = time.perf_counter() - started
    return report


def rebuild(store: ColumnarStore | None = None) -> SyncReport:
    """Start the copy again from nothing (nightly, or after a restore)."""
    store = store or ColumnarStore()
    with store.writer():
        store.drop_all()
    report = sync(store, full=True)
    while report.events:  # more than one batch of events
        more = sync(store)
        report.events += more.events
        if not more.events:
            break
    return report


# --- events -------------------------------------------------------------------------------
def _copy_events(
    store: ColumnarStore, state: SyncState, seq: int, batch: int, report: SyncReport
) -> dict[int, set[int]]:
    """Copy new events (and late ones); return the customers they name, by tenant."""
    events = Event.objects.unscoped("the analytics copy spans tenants").order_by("id")
    columns = ("id", "tenant_id", "type", "occurred_at", "customer_id", "staff_id", "source")
    rows = list(events.filter(id__gt=state.events_watermark).values_list(*columns)[:batch])
    gaps = state.event_gaps or {}
    late = []
    if gaps:
        late = list(events.filter(id__in=[int(gap) for gap in gaps]).values_list(*columns))
        for row in late:
            gaps.pop(str(row[0]), None)
    now = time.time()
    if rows:
        seen = {row[0] for row in rows}
        first, last = state.events_watermark + 1, rows[-1][0]
        if last - first < MAX_GAPS * 10:
            for missing in range(first, last + 1):
                if missing not in seen and len(gaps) < MAX_GAPS:
                    gaps[str(missing)] = now
        state.events_watermark = last
    state.event_gaps = {gap: at for gap, at in gaps.items() if now - at < GAP_PATIENCE}
    by_tenant: dict[int, list[tuple]] = defaultdict(list)
    customers: dict[int, set[int]] = defaultdict(set)
    for row in [*rows, *late]:
        event_id, tenant_id, kind, occurred_at, customer_id, staff_id, source = row
        by_tenant[tenant_id].append((event_id, kind, occurred_at, customer_id, staff_id, source))
        if customer_id is not None:
            customers[tenant_id].add(customer_id)
    for tenant_id, tenant_rows in by_tenant.items():
        store.write_part("events", tenant_id, tenant_rows, seq)
        report.tenants.add(tenant_id)
    report.events = len(rows) + len(late)
    return customers


# --- customers ----------------------------------------------------------------------------
CUSTOMER_COLUMNS = tuple(SCHEMAS["customers"])


def _copy_customers(
    store: ColumnarStore, seq: int, changed: dict[int, set[int]] | None, report: SyncReport
) -> None:
    """The customers named (or, with ``changed=None``, all of them) as new versions."""
    customers = Customer.objects.unscoped("the analytics copy spans tenants")
    if changed is None:
        tenants = customers.values_list("tenant_id", flat=True).distinct().order_by()
        for tenant_id in tenants:
            rows = list(
                customers.filter(tenant_id=tenant_id).order_by("id").values_list(*CUSTOMER_COLUMNS)
            )
            if rows:  # every customer of the tenant: the older versions can go
                store.replace_all("customers", tenant_id, rows, seq)
                report.customers += len(rows)
                report.tenants.add(tenant_id)
        return
    for tenant_id, ids in changed.items():
        ordered = sorted(ids)
        rows: list[tuple] = []
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            rows += customers.filter(tenant_id=tenant_id, id__in=chunk).values_list(
                *CUSTOMER_COLUMNS
            )
        _write(store, "customers", tenant_id, rows, seq, report)


# --- orders -------------------------------------------------------------------------------
ORDER_COLUMNS = tuple(SCHEMAS["orders"])


def _copy_orders(store: ColumnarStore, state: SyncState, seq: int, report: SyncReport) -> None:
    orders = Order.objects.unscoped("the analytics copy spans tenants")
    started_at = timezone.now()
    if state.orders_changed_since:
        since = datetime.fromisoformat(state.orders_changed_since) - OVERLAP
        orders = orders.filter(Q(updated_at__gte=since))
    rows = list(orders.order_by("tenant_id", "id").values_list("tenant_id", *ORDER_COLUMNS))
    by_tenant: dict[int, list[tuple]] = defaultdict(list)
    for tenant_id, *row in rows:
        by_tenant[tenant_id].append(tuple(row))
    for tenant_id, tenant_rows in by_tenant.items():
        _write(store, "orders", tenant_id, tenant_rows, seq, report)
    state.orders_changed_since = started_at.isoformat()


def _write(
    store: ColumnarStore, table: str, tenant_id: int, rows: list[Any], seq: int, report: SyncReport
) -> None:
    if not rows:
        return
    store.write_part(table, tenant_id, rows, seq)
    setattr(report, table, getattr(report, table) + len(rows))
    report.tenants.add(tenant_id)


def _compact(store: ColumnarStore, tenants: set[int]) -> int:
    replaced = 0
    for tenant_id in tenants:
        for table in SCHEMAS:
            if len(store.parts(table, tenant_id)) > COMPACT_AFTER_PARTS:
                replaced += store.compact(table, tenant_id)
    return replaced
