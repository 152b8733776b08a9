"""Background work of the WeCom domain."""

from __future__ import annotations

from datetime import timedelta

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task


@db_task(retries=3, retry_delay=5)
def process_callback(inbox_id: int) -> None:
    """Process one stored callback. Returns nothing: Huey would store a result, one more
    write per callback; the outcome is on the inbox row."""
    from siyu.wecom.processing import process

    process(inbox_id)


@db_task(retries=3, retry_delay=5)
def process_callbacks(inbox_ids: list[int]) -> None:
    """Process callbacks stored together, in the order they arrived (one task per batch the
    inbox writer committed; new friends of one tenant applied together). A row already done
    is skipped, so a retry repeats nothing."""
    from siyu.wecom.processing import process_many

    process_many(list(inbox_ids))


@db_task(retries=3, retry_delay=5)
def process_tenant_callbacks(tenant_id: int) -> None:
    """Process every waiting callback of a tenant (at most one such task waits per tenant:
    ``processing.schedule_processing``). Returns nothing, so Huey stores no result."""
    from siyu.wecom.processing import process_waiting

    process_waiting(tenant_id)


@db_periodic_task(crontab(minute="*"))
def retry_stuck_callbacks() -> int:
    """Every minute: process callbacks whose task was lost or that failed (≤ 5 attempts)."""
    from siyu.wecom.processing import process, rows_to_retry

    ids = rows_to_retry(older_than=timedelta(minutes=1))
    for inbox_id in ids:
        process(inbox_id)
    return len(ids)


# --- sync with WeCom ---------------------------------------------------------------------
# The hour (settings.TIME_ZONE) of the nightly full sync; the other hours are incremental.
NIGHTLY_FULL_SYNC_HOUR = 3


@db_task(retries=2, retry_delay=300)
def sync_tenant_task(tenant_id: int, full: bool, trigger: str = "schedule") -> str:
    """Sync one tenant with WeCom; a no-op when unconfigured or already syncing.

    Transient WeCom failures (outage, rate limit after the client's own retries) fail the
    task, which Huey retries twice, five minutes apart; the sync is idempotent.
    """
    from siyu.tenancy.models import Tenant
    from siyu.wecom.errors import WeComError, WeComNotConfigured
    from siyu.wecom.sync import TRANSIENT_ERRORS, SyncAlreadyRunning, is_configured, sync_tenant

    tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
    if tenant is None or not is_configured(tenant):
        return "not_configured"
    try:
        report = sync_tenant(tenant, full=full, trigger=trigger)
    except (SyncAlreadyRunning, WeComNotConfigured) as error:
        return getattr(error, "code", "skipped")
    except TRANSIENT_ERRORS:
        raise  # worth another try later
    except WeComError as error:  # refused (secret, permission): retrying will not help
        return f"failed: {error.errcode}"  # the SyncRun holds the message
    return f"synced in {report.seconds:.1f} s"


@db_periodic_task(crontab(minute="0"))
def scheduled_syncs() -> int:
    """Every hour: an incremental sync of every configured tenant; at 03:00 a full one.

    One periodic task for both, deciding by the hour in ``settings.TIME_ZONE`` (Huey's
    crontab runs in UTC). Each tenant is its own task, so tenants sync in parallel and one
    failure does not hold up the others.
    """
    from django.utils import timezone

    from siyu.wecom.sync import configured_tenants

    full = timezone.localtime().hour == NIGHTLY_FULL_SYNC_HOUR
    tenants = configured_tenants()
    for tenant in tenants:
        sync_tenant_task(tenant.pk, full, "schedule")
    return len(tenants)
