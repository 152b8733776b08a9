"""Database helpers that depend on the engine.

``prompt_transaction``: a transaction that asks for SQLite's write lock every millisecond
instead of through SQLite's own busy handler. That handler backs off (1, 2, 5, 10 … then 50
and 100 ms between tries), so a writer that has waited a little waits long: under a steady
stream of other writers (the worker processing callbacks) it keeps missing the moments the
lock is free. The WeCom callback endpoint must acknowledge within WeCom's five seconds and,
in practice, within tens of milliseconds; its one writer per process (the inbox's group
commit) polls instead. On PostgreSQL, which locks rows, it is a plain ``atomic()``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import OperationalError, transaction

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
