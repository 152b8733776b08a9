"""Keeping the analytics copy current: a keeper thread in the worker, a nightly rebuild.

The keeper syncs every ``SIYU_ANALYTICS_SYNC_SECONDS`` (2 by default; 0 turns it off) in a
thread of the ``siyu worker`` process rather than as queued tasks: a task every 2 seconds
would take a worker thread from the callbacks for good. Several worker processes may run a
keeper each; the writer lock lets one sync at a time and the others skip.
"""

from __future__ import annotations

import logging
import os
import threading

from django.db import close_old_connections
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from siyu.analytics.store import WriterBusy

logger = logging.getLogger(__name__)
ERROR_BACKOFF_SECONDS = 30.0


def sync_interval() -> float:
    raw = os.environ.get("SIYU_ANALYTICS_SYNC_SECONDS", "2")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"SIYU_ANALYTICS_SYNC_SECONDS must be a number; got {raw!r}") from None
    if seconds < 0:
        raise ValueError("SIYU_ANALYTICS_SYNC_SECONDS must be 0 (off) or more")
    return seconds


class Keeper(threading.Thread):
    """Sync, wait, repeat, until ``stop()``; an error is logged and retried later."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="analytics-keeper", daemon=True)
        self.interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        from siyu.analytics.sync import sync

        while not self._stopped.is_set():
            wait = self.interval
            try:
                close_old_connections()
                sync()
            except WriterBusy:
                pass
            except Exception:
                logger.exception("analytics sync failed; retrying in %s s", ERROR_BACKOFF_SECONDS)
                wait = ERROR_BACKOFF_SECONDS
            self._stopped.wait(wait)
        close_old_connections()

    def stop(self) -> None:
        self._stopped.set()


def start_keeper() -> Keeper | None:
    interval = sync_interval()
    if not interval:
        return None
    keeper = Keeper(interval)
    keeper.start()
    return keeper


@db_periodic_task(crontab(hour="4", minute="30"))
def rebuild_analytics_copy() -> None:
    """Nightly: copy everything again, which also catches changes no sync could see."""
    from siyu.analytics.sync import rebuild

    try:
        report = rebuild()
    except WriterBusy:
        logger.info("analytics rebuild skipped: a sync holds the writer lock")
        return
    logger.info("analytics copy rebuilt: %s events in %.1f s", report.events, report.seconds)


@db_periodic_task(crontab(hour="5", minute="0"))
def refresh_all_predictions() -> None:
    """Nightly, after the rebuild: each tenant's buyers' predicted value."""
    from siyu.analytics.predictions import refresh_predictions
    from siyu.analytics.store import ColumnarStore

    for tenant_id in ColumnarStore().tenants("orders"):
        report = refresh_predictions(tenant_id)
        logger.info(
            "predictions of tenant %s: %s stored%s",
            tenant_id,
            report.stored,
            f" (skipped: {report.skipped})" if report.skipped else "",
        )
