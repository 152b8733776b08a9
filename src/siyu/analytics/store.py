"""The columnar copy: Parquet files per table and tenant, one writer, any number of readers.

Layout under ``settings.ANALYTICS_DIR`` (``$SIYU_DATA_DIR/analytics``)::

    events/tenant=7/part-000000000012.parquet   (append-only facts)
    customers/tenant=7/part-...parquet           (versions of rows: readers keep the newest)
    orders/tenant=7/part-...parquet
    state.json                                   (what the sync has copied)
    writer.lock                                  (held by the one process that writes)

Why files and not a DuckDB database: a DuckDB file opened for writing by one process cannot be
opened by another at all, and the console and API run in several processes (ADR 0006). A part
is written under a temporary name and renamed into place, so a reader sees whole files only;
every part carries ``_seq``, the number of the sync that wrote it, and a row's newest version
is the one with the highest ``_seq``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from django.conf import settings

# Columns of each table and their DuckDB types; ``_seq`` is added to every part.
SCHEMAS: dict[str, dict[str, str]] = {
    "events": {
        "id": "BIGINT",
        "type": "VARCHAR",
        "occurred_at": "TIMESTAMPTZ",
        "customer_id": "BIGINT",
        "staff_id": "BIGINT",
        "source": "VARCHAR",
    },
    "customers": {
        "id": "BIGINT",
        "first_added_at": "TIMESTAMPTZ",
        "created_at": "TIMESTAMPTZ",
        "source_state": "VARCHAR",
        "owner_id": "BIGINT",
        "status": "VARCHAR",
        "lost_at": "TIMESTAMPTZ",
        "merged_into_id": "BIGINT",
        "lifecycle_stage": "VARCHAR",
    },
    "orders": {
        "id": "BIGINT",
        "customer_id": "BIGINT",
        "status": "VARCHAR",
        "placed_at": "TIMESTAMPTZ",
        "paid_at": "TIMESTAMPTZ",
        "paid_fen": "BIGINT",
        "refunded_fen": "BIGINT",
        "channel": "VARCHAR",
    },
}
VERSIONED = frozenset({"customers", "orders"})  # rows change: keep each id's newest version
COMPACT_AFTER_PARTS = 32


class WriterBusy(Exception):
    """Another process holds the writer lock (it is syncing right now)."""


@dataclass
class SyncState:
    """What has been copied: persisted as JSON next to the files."""

    seq: int = 0  # number of the last sync that wrote something
    events_watermark: int = 0  # every event id up to this was looked at
    # ids below the watermark not seen yet (a transaction still open, or rolled back), with
    # the time they were first missed: re-read until found or too old
    event_gaps: dict[str, float] | None = None
    orders_changed_since: str = ""  # ISO time: orders updated after it are copied next
    customers_full_refresh_at: float = 0.0  # epoch seconds of the last full customer copy

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "events_watermark": self.events_watermark,
            "event_gaps": self.event_gaps or {},
            "orders_changed_since": self.orders_changed_since,
            "customers_full_refresh_at": self.customers_full_refresh_at,
        }


class ColumnarStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root or settings.ANALYTICS_DIR)

    # -- paths -------------------------------------------------------------------------------
    def tenant_dir(self, table: str, tenant_id: int) -> Path:
        return self.root / table / f"tenant={int(tenant_id)}"

    def parts(self, table: str, tenant_id: int) -> list[Path]:
        folder = self.tenant_dir(table, tenant_id)
        if not folder.is_dir():
            return []
        return sorted(folder.glob("part-*.parquet"))

    def tenants(self, table: str) -> list[int]:
        folder = self.root / table
        if not folder.is_dir():
            return []
        return sorted(int(path.name.split("=", 1)[1]) for path in folder.glob("tenant=*"))

    # -- the writer ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the one writer lock for the block; raise ``WriterBusy`` if another has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "writer.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WriterBusy(str(self.root)) from None
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load_state(self) -> SyncState:
        path = self.root / "state.json"
        if not path.exists():
            return SyncState(event_gaps={})
        data = json.loads(path.read_text())
        return SyncState(
            seq=int(data.get("seq", 0)),
            events_watermark=int(data.get("events_watermark", 0)),
            event_gaps={str(k): float(v) for k, v in (data.get("event_gaps") or {}).items()},
            orders_changed_since=str(data.get("orders_changed_since", "")),
            customers_full_refresh_at=float(data.get("customers_full_refresh_at", 0.0)),
        )

    def save_state(self, state: SyncState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".state-{uuid.uuid4().hex}.json"
        temporary.write_text(json.dumps(state.as_json()))
        os.replace(temporary, self.root / "state.json")

    def write_part(self, table: str, tenant_id: int, rows: list[tuple], seq: int) -> Path:
        """Write rows (tuples in ``SCHEMAS[table]`` order) as one part; return its path."""
        folder = self.tenant_dir(table, tenant_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"part-{seq:012d}-{uuid.uuid4().hex[:8]}.parquet"
        temporary = folder / f".{target.name}.tmp"
        frame = _frame(table, rows, seq)
        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            connection.register("batch", frame)
            casts = ", ".join(
                f"CAST({name} AS {kind}) AS {name}" for name, kind in SCHEMAS[table].items()
            )
            connection.execute(
                f"COPY (SELECT {casts}, CAST(_seq AS BIGINT) AS _seq FROM batch) "
                f"TO '{temporary}' (FORMAT parquet)"
            )
        os.replace(temporary, target)
        return target

    def replace_all(self, table: str, tenant_id: int, rows: list[tuple], seq: int) -> Path:
        """Write a complete copy of the tenant's table and remove the parts it supersedes
        (a full refresh of customers). Call with the writer lock held."""
        older = self.parts(table, tenant_id)
        target = self.write_part(table, tenant_id, rows, seq)
        for part in older:
            part.unlink(missing_ok=True)
        return target

    def compact(self, table: str, tenant_id: int) -> int:
        """Merge a tenant's parts into one (newest version of each row for versioned tables);
        return how many parts it replaced. Call with the writer lock held."""
        parts = self.parts(table, tenant_id)
        if len(parts) < 2:
            return 0
        folder = self.tenant_dir(table, tenant_id)
        seq = max(_seq_of(part) for part in parts)
        target = folder / f"part-{seq:012d}-{uuid.uuid4().hex[:8]}.parquet"
        temporary = folder / f".{target.name}.tmp"
        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            source = _read_sql(table, parts)
            order = "occurred_at, id" if table == "events" else "id"
            connection.execute(
                f"COPY (SELECT * FROM ({source}) ORDER BY {order}) TO '{temporary}' "
                "(FORMAT parquet)"
            )
        os.replace(temporary, target)
        for part in parts:
            part.unlink()
        return len(parts)

    def drop_all(self) -> None:
        """Forget the copy (a rebuild starts from nothing). Call with the writer lock held."""
        for table in SCHEMAS:
            shutil.rmtree(self.root / table, ignore_errors=True)
        (self.root / "state.json").unlink(missing_ok=True)

    # -- readers -------------------------------------------------------------------------------
    def relation_sql(self, table: str, tenant_id: int) -> str | None:
        """SQL reading the tenant's rows of ``table`` (newest versions), or None if empty."""
        parts = self.parts(table, tenant_id)
        if not parts:
            return None
        return _read_sql(table, parts, keep_seq=False)


def _frame(table: str, rows: list[tuple], seq: int) -> Any:
    """Rows as a pandas frame with one typed column each (nullable integers, UTC times), so
    that DuckDB reads them column by column instead of row by row."""
    import pandas

    columns = list(SCHEMAS[table])
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    data: dict[str, Any] = {}
    for name, column in zip(columns, values, strict=True):
        kind = SCHEMAS[table][name]
        if kind == "BIGINT":
            data[name] = pandas.array(list(column), dtype="Int64")
        elif kind == "TIMESTAMPTZ":
            data[name] = pandas.to_datetime(list(column), utc=True)
        else:
            data[name] = pandas.array(list(column), dtype="string")
    data["_seq"] = pandas.array([seq] * len(rows), dtype="Int64")
    return pandas.DataFrame(data)


def _seq_of(part: Path) -> int:
    return int(part.name.split("-")[1])


def _read_sql(table: str, parts: list[Path], *, keep_seq: bool = True) -> str:
    """SQL reading ``parts``: for versioned tables, the newest version of each id.

    The oldest part is the big one (a compaction or a full copy); the newer ones are small
    (the rows synced since). Rows of the big part that no newer part replaces are kept as
    they are, and only the small parts are ranked by version: a window over a million
    customers on every query would cost half a second.
    """
    drop = "" if keep_seq else " EXCLUDE (_seq)"
    if table not in VERSIONED or len(parts) == 1:
        return f"SELECT *{drop} FROM read_parquet({_files(parts)})"
    base, newer = _files(parts[:1]), _files(parts[1:])
    return (
        f"SELECT *{drop} FROM read_parquet({base}) "
        f"WHERE id NOT IN (SELECT id FROM read_parquet({newer})) "
        f"UNION ALL SELECT *{drop} FROM read_parquet({newer}) "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY _seq DESC) = 1"
    )


def _files(parts: list[Path]) -> str:
    return "[" + ", ".join(f"'{part}'" for part in parts) + "]"
