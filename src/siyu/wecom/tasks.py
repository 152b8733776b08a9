"""Background work of the WeCom domain."""

from __future__ import annotations

from datetime import timedelta

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task


@db_task(retries=3, retry_delay=5)
def process_callback(inbox_id: int) -> str:
    from siyu.wecom.processing import process

    return process(inbox_id)


@db_periodic_task(crontab(minute="*"))
def retry_stuck_callbacks() -> int:
    """Every minute: process callbacks whose task was lost or that failed (≤ 5 attempts)."""
    from siyu.wecom.processing import process, rows_to_retry

    ids = rows_to_retry(older_than=timedelta(minutes=1))
    for inbox_id in ids:
        process(inbox_id)
    return len(ids)
