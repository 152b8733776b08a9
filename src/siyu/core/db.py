"""Database helpers that depend on the engine.

``prompt_transaction``: a transaction that asks for SQLite's write lock every millisecond
instead of through SQLite's own busy handler. That handler backs off (1, 2, 5, 10 … then 50
and 100 ms between tries), so a writer that has waited a little waits long: under a steady
stream of other writers (the worker processing callbacks) it keeps missing the moments the
lock is free. The WeCom callback endpoint must acknowledge within WeCom's five seconds and,
in practice, within tens of milliseconds; its one writer per process (the inbox's group
commit) polls instead. On PostgreSQL, which locks rows, it is a plain ``atomic()``.

``refresh_sqlite_statistics``: after ``migrate``, ANALYZE the SQLite tables whose planner
statistics miss one of their indexes. SQLite guesses that an index without statistics is very
selective, so a new index on an analysed table wins plans it should lose (a new partial index
on customers turned the console list's first page from 0.2 s into 2.4 s at a million
customers). A database never analysed is left alone: its plans all come from the same
heuristics. PostgreSQL's autovacuum keeps its own statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import OperationalError, connections, transaction

POLL_SECONDS = 0.001


@contextmanager
def prompt_transaction(*, patience: float = 20.0) -> Iterator[None]:
    """``transaction.atomic()``, taking SQLite's write lock as soon as it is free.

    Gives up with SQLite's own "database is locked" after ``patience`` seconds (the
    configured busy timeout, by default). Only for the outermost transaction.
    """
    connection = transaction.get_connection()
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    connection.ensure_connection()
    raw = connection.connection
    previous = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        block = _enter_promptly(patience)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(previous)}")
    with block:
        yield


class _Entered:
    """An ``atomic()`` already entered; ``with`` only has to leave it."""

    def __init__(self, atomic: transaction.Atomic) -> None:
        self.atomic = atomic

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> bool | None:
        return self.atomic.__exit__(*exc_info)


def _enter_promptly(patience: float) -> _Entered:
    """Enter ``atomic()`` (SQLite: ``BEGIN IMMEDIATE``), retrying every millisecond while
    another connection holds the write lock. A failed ``BEGIN`` leaves the connection as it
    was (still in autocommit), so trying again is safe."""
    deadline = time.monotonic() + patience
    while True:
        atomic = transaction.atomic()
        try:
            atomic.__enter__()
        except OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(POLL_SECONDS)
            continue
        return _Entered(atomic)


def refresh_sqlite_statistics(using: str = "default") -> list[str]:
    """ANALYZE each index without statistics on an analysed SQLite table; return their names.

    One index at a time: ANALYZE of an index reads the index, not its table, and an index that
    has nothing in it (a partial index no row matches yet) stays cheap to look at again.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone() is None:
            return []
        cursor.execute(
            "SELECT m.name FROM sqlite_master m"
            " WHERE m.type = 'index' AND m.tbl_name IN (SELECT tbl FROM sqlite_stat1)"
            " AND m.name NOT IN (SELECT idx FROM sqlite_stat1 WHERE idx IS NOT NULL)"
            " ORDER BY m.name"
        )
        indexes = [row[0] for row in cursor.fetchall()]
        for index in indexes:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(index)}")
    return indexes


def refresh_statistics_after_migrate(using: str = "default", **_signal: object) -> None:
    """``post_migrate`` receiver (connected once, for the core app)."""
    refresh_sqlite_statistics(using)
