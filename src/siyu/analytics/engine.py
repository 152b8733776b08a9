"""The query engine behind the metrics: DuckDB in memory over one tenant's Parquet files.

``Engine`` is the interface the metric definitions use (``siyu.analytics.metrics``): run SQL
over the relations ``events``, ``customers`` and ``orders`` of one tenant and return rows of
plain Python values. ``DuckDBEngine`` opens an in-memory connection per query, with those
names as views over the tenant's files (an empty table when the tenant has none yet) and the
session time zone set to the site's, so that ``occurred_at::DATE`` is the local day. A
ClickHouse engine would provide the same three relations (ADR 0006).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import duckdb
from django.conf import settings

from siyu.analytics.store import SCHEMAS, ColumnarStore

THREADS = 2  # this machine's cores; DuckDB would otherwise use every core it sees


class Engine(Protocol):
    def rows(self, tenant_id: int, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run ``sql`` over the tenant's ``events`` / ``customers`` / ``orders``."""


class DuckDBEngine:
    def __init__(self, store: ColumnarStore | None = None, *, time_zone: str | None = None):
        self.store = store or ColumnarStore()
        self.time_zone = time_zone or settings.TIME_ZONE

    @contextlib.contextmanager
    def connection(self, tenant_id: int) -> Iterator[duckdb.DuckDBPyConnection]:
        connection = duckdb.connect(config={"threads": THREADS})
        try:
            connection.execute(f"SET TimeZone = '{self.time_zone}'")
            for table, columns in SCHEMAS.items():
                source = self.store.relation_sql(table, tenant_id)
                if source is None:
                    definition = ", ".join(f"{name} {kind}" for name, kind in columns.items())
                    connection.execute(f"CREATE TEMP TABLE {table} ({definition})")
                else:
                    connection.execute(f"CREATE TEMP VIEW {table} AS {source}")
            yield connection
        finally:
            connection.close()

    def rows(self, tenant_id: int, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.connection(tenant_id) as connection:
            return connection.execute(sql, list(params)).fetchall()
