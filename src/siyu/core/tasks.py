"""Task-queue plumbing (Huey: SQLite storage embedded, Redis when SIYU_REDIS_URL is set).

Rules every task follows: it is enqueued only after the transaction that asked for it
commits (``on_commit_task``), and running it twice has the effect of running it once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, task


def on_commit_task(task_function: Any, *args: Any, **kwargs: Any) -> None:
    """Enqueue ``task_function(*args, **kwargs)`` once the current transaction commits.

    Why: a task enqueued inside a transaction may run before the rows it needs are visible,
    or for a change that is then rolled back.
    """
    transaction.on_commit(lambda: task_function(*args, **kwargs))


@db_task(retries=3, retry_delay=10)
def run_handlers_of_events(work: list[list[Any]]) -> None:
    """Run ``[[event_id, [handler names]], ...]``, each pair at most once, together (see
    ``siyu.core.events.run_together``): the queued handlers of the events one commit or
    one callback produced travel in one task. Returns nothing, so Huey stores no result."""
    from siyu.core.events import run_handlers_of

    run_handlers_of(work)


@db_task(retries=3, retry_delay=10)
def run_event_handlers(event_id: int, handler_names: list[str]) -> None:
    """Run the queued handlers of one event, each at most once (see ``run_handler``).

    Returns nothing on purpose: Huey stores a task's non-None result, one more write per
    task. A failed handler is left to the redelivery sweep; the others still run.
    """
    from siyu.core.events import run_handler

    for name in handler_names:
        run_handler(event_id, name)


@db_task(retries=3, retry_delay=10)
def run_event_handler(event_id: int, handler_name: str) -> None:
    """One handler of one event (tasks queued by earlier versions still arrive by this name)."""
    from siyu.core.events import run_handler

    run_handler(event_id, handler_name)


@db_periodic_task(crontab(minute="*"))
def redeliver_events() -> int:
    """Every minute: re-enqueue handlers lost to a crash or failed, for the last day."""
    from siyu.core.events import redeliver_pending

    return redeliver_pending(older_than=timedelta(minutes=1), within=timedelta(days=1))


@task()
def echo(value: Any) -> dict[str, Any]:
    """Health check of the queue: returns what it was given and which worker ran it."""
    import os
    import socket

    return {"value": value, "host": socket.gethostname(), "pid": os.getpid()}


# Background jobs' task lives with their service module; importing it here registers it with
# the queue wherever tasks are discovered.
from siyu.core import jobs as _jobs  # noqa: E402,F401
