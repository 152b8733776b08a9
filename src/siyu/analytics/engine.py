"""The query engine behind the metrics: DuckDB in memory over each tenant's Parquet files.

``Engine`` is the interface the metric definitions use (``siyu.analytics.metrics``): run SQL
over the relations ``events``, ``customers`` and ``orders`` of one tenant and return rows of
plain Python values. ``DuckDBEngine`` keeps one in-memory DuckDB database per process (opening
one costs 100-200 ms; a cursor on it, one millisecond) with a schema per tenant whose views
read that tenant's files; the views are replaced when the sync has written or compacted
parts. Each query runs on its own cursor, with the session time zone set to the site's so
that ``occurred_at::DATE`` is the local day. A ClickHouse engine would provide the same three
relations (ADR 0006).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import duckdb
from django.conf import settings

from siyu.analytics.store import SCHEMAS, ColumnarStore

THREADS = 2  # this machine's cores; DuckDB would otherwise use every core it sees


class Engine(Protocol):
    def rows(self, tenant_id: int, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run ``sql`` over the tenant's ``events`` / ``customers`` / ``orders``."""


class _Database:
    """The process's in-memory DuckDB and which files each tenant schema's views read."""

    def __init__(self) -> None:
        self.connection = duckdb.connect(config={"threads": THREADS})
        self.lock = threading.Lock()
        self.signatures: dict[tuple[str, int], tuple] = {}


_database: _Database | None = None
_database_lock = threading.Lock()


def _shared() -> _Database:
    global _database
    with _database_lock:
        if _database is None:
            _database = _Database()
        return _database


class DuckDBEngine:
    def __init__(self, store: ColumnarStore | None = None, *, time_zone: str | None = None):
        self.store = store or ColumnarStore()
        self.time_zone = time_zone or settings.TIME_ZONE
        self.database = _shared()

    def _schema(self, tenant_id: int, *, force: bool = False) -> str:
        """The tenant's schema, its views pointing at the files there are now."""
        schema = f"t{int(tenant_id)}_{abs(hash(str(self.store.root))) % 10**8}"
        signature = tuple(tuple(self.store.parts(table, tenant_id)) for table in SCHEMAS)
        key = (str(self.store.root), int(tenant_id))
        database = self.database
        with database.lock:
            if not force and database.signatures.get(key) == signature:
                return schema
            cursor = database.connection.cursor()
            try:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                cursor.execute(
                    f"CREATE OR REPLACE MACRO {schema}.local_day(moment) AS "
                    + _local_day_sql(self.time_zone)
                )
                for table, columns in SCHEMAS.items():
                    source = self.store.relation_sql(table, tenant_id)
                    if source is None:  # nothing copied yet: an empty relation of that shape
                        casts = ", ".join(
                            f"NULL::{kind} AS {name}" for name, kind in columns.items()
                        )
                        source = f"SELECT {casts} WHERE false"
                    cursor.execute(f"CREATE OR REPLACE VIEW {schema}.{table} AS {source}")
            finally:
                cursor.close()
            database.signatures[key] = signature
        return schema

    @contextlib.contextmanager
    def connection(self, tenant_id: int) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor whose ``events`` / ``customers`` / ``orders`` are the tenant's."""
        schema = self._schema(tenant_id)
        cursor = self.database.connection.cursor()
        try:
            cursor.execute(f"SET TimeZone = '{self.time_zone}'")
            cursor.execute(f"SET search_path = '{schema}'")
            yield cursor
        finally:
            cursor.close()

    def rows(self, tenant_id: int, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            with self.connection(tenant_id) as cursor:
                return cursor.execute(sql, list(params)).fetchall()
        except duckdb.IOException:
            # A compaction removed parts between the views' refresh and the query: once more.
            self._schema(tenant_id, force=True)
            with self.connection(tenant_id) as cursor:
                return cursor.execute(sql, list(params)).fetchall()


@lru_cache(maxsize=16)
def _local_day_sql(time_zone: str) -> str:
    """``local_day(moment)``: the moment's date in the site's time zone.

    DuckDB's own conversion (``moment::DATE`` under a session time zone) asks ICU for each
    row, about a second per million; a zone whose offset has not changed for decades (China:
    UTC+8, no daylight saving since 1991) is a fixed shift of the epoch instead, plain
    arithmetic. Zones with daylight saving keep the exact conversion.
    """
    zone = ZoneInfo(time_zone)
    offsets = {
        datetime(year, month, 1, 12, tzinfo=zone).utcoffset()
        for year in range(1995, datetime.now().year + 3)
        for month in (1, 4, 7, 10)
    }
    if len(offsets) == 1:
        (offset,) = offsets
        micros = int(offset.total_seconds()) * 1_000_000
        return f"CAST(make_timestamp(epoch_us(moment) + {micros}) AS DATE)"
    return "CAST(moment AS DATE)"
