"""The segments domain's periodic tasks (discovered by the worker).

* every 30 minutes: recount dynamic segments whose cached count is older than that;
* daily at 00:20: sample every segment's size (``SegmentSize``, the size-over-time chart);
* daily at 03:10: recompute every tenant's RFM scores and layers.

Each runs tenant by tenant; one tenant's failure is logged and does not stop the others.
All are idempotent: counts and sizes are upserts, RFM an upsert of every customer's row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from siyu.segments import rfm, services

logger = logging.getLogger(__name__)


def _each_tenant(work: Callable[[Any], Any], what: str) -> int:
    from siyu.tenancy.models import Tenant

    done = 0
    for tenant in Tenant.objects.filter(is_active=True).order_by("pk"):
        try:
            work(tenant)
        except Exception:  # one brand's bad data must not stop the others
            logger.exception("%s failed for tenant %s", what, tenant.pk)
        else:
            done += 1
    return done


@db_periodic_task(crontab(minute="*/30"))
def refresh_segment_counts() -> int:
    return _each_tenant(
        lambda tenant: services.refresh_stale_counts(tenant, older_than=timedelta(minutes=30)),
        "refreshing segment counts",
    )


@db_periodic_task(crontab(hour="0", minute="20"))
def sample_segment_sizes() -> int:
    return _each_tenant(services.record_sizes, "sampling segment sizes")


@db_periodic_task(crontab(hour="3", minute="10"))
def compute_rfm_scores() -> int:
    return _each_tenant(rfm.compute_rfm, "computing RFM")


@db_task(retries=1, retry_delay=30)
def compute_rfm_for_tenant(tenant_id: int) -> dict[str, int]:
    """On demand (console, API): one tenant's RFM now."""
    return rfm.compute_rfm(tenant_id)
