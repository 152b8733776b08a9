"""Background jobs: claimed once, throttled progress, cancel, failures, the starter's rights,
output files and their expiry, lost and interrupted jobs."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.translation import gettext

from siyu.core import jobs
from siyu.core.errors import Conflict, InvalidInput, NotFound
from siyu.core.jobs import (
    Progress,
    cancel_job,
    execute_job,
    job_actor,
    job_file,
    job_for,
    job_runner,
    start_job,
    visible_jobs,
)
from siyu.core.models import AuditEntry, BackgroundJob
from siyu.core.scoping import DataScope
from siyu.tenancy import services
from siyu.testing.factories import StaffFactory

calls: list[dict[str, Any]] = []


@job_runner("test.scripted")
def scripted_runner(job: BackgroundJob, progress: Progress) -> dict[str, Any] | None:
    """A runner whose behaviour the test picks through ``params["script"]``."""
    script = job.params.get("script", "ok")
    calls.append({"job": job.pk, "script": script, "actor": job_actor(job)})
    if script == "ok":
        progress.set_total(3)
        progress.advance(3)
        return {"rows": 3}
    if script == "service_error":
        raise InvalidInput("Row 2 is bad", details={"errors": [{"row": 2}]})
    if script == "huge_error":
        raise InvalidInput("Many bad rows", details={"errors": list(range(2500)), "count": 2500})
    if script == "bug":
        raise ZeroDivisionError("oops")
    if script == "cancel_midway":
        progress.set_total(10)
        progress.advance(4)
        cancel_job(services.system_actor(job.tenant), job.pk)
        progress.check_cancelled()
        calls.append({"reached": "after cancel"})
        return {"rows": 10}
    if script == "output_bytes":
        progress.save_output("report.csv", b"a,b\n1,2\n")
        return {}
    if script == "output_stream":
        progress.save_output("big.csv", io.BytesIO(b"x\n" * 1000))
        return {}
    if script == "in_transaction":
        progress.set_total(5)
        with transaction.atomic():
            for _step in range(5):
                progress.advance()
                calls.append({"stored_done": _stored(job).done})
        return {}
    if script == "cancelled_before_commit":
        progress.set_total(1)
        # someone cancels while the runner works inside its transaction (in production from
        # another connection; here just before, as the test shares one connection)
        cancel_job(services.system_actor(job.tenant), job.pk)
        with transaction.atomic():
            BackgroundJob.objects.for_tenant(job.tenant_id).filter(pk=job.pk).update(
                label="written inside the transaction"
            )
            progress.advance()  # not written, no cancel noticed inside the transaction
            progress.check_cancelled()  # the runner's last look before committing
        return {}
    raise AssertionError(f"unknown script {script}")


def _stored(job: BackgroundJob) -> BackgroundJob:
    return BackgroundJob.objects.for_tenant(job.tenant_id).get(pk=job.pk)


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    calls.clear()


@pytest.fixture
def system(tenant):
    return services.system_actor(tenant)


def start(actor, script: str = "ok", **kwargs) -> BackgroundJob:
    return start_job(actor, "test.scripted", f"test {script}", params={"script": script}, **kwargs)


# --- queueing and claiming ---------------------------------------------------------------
def test_a_job_is_queued_on_commit_and_runs_once(system, django_capture_on_commit_callbacks):
    # when: a job is started in a transaction that commits (tasks run inline in tests)
    with django_capture_on_commit_callbacks(execute=True):
        job = start(system)
        assert _stored(job).status == BackgroundJob.Status.QUEUED

    # then: it ran to completion, once
    stored = _stored(job)
    assert stored.status == BackgroundJob.Status.SUCCEEDED
    assert (stored.done, stored.total, stored.result) == (3, 3, {"rows": 3})
    assert stored.started_at is not None and stored.finished_at is not None
    assert len(calls) == 1


def test_a_redelivered_task_does_nothing(system):
    job = start(system)
    assert execute_job(job.tenant_id, job.pk).status == BackgroundJob.Status.SUCCEEDED
    # when: the queue delivers the same task again
    assert execute_job(job.tenant_id, job.pk) is None
    # then: the runner ran once
    assert len(calls) == 1


def test_a_job_of_another_tenant_is_not_claimed_by_id_alone(system, other_tenant):
    job = start(system)
    assert execute_job(other_tenant.pk, job.pk) is None
    assert _stored(job).status == BackgroundJob.Status.QUEUED


def test_an_unknown_kind_is_refused(system):
    with pytest.raises(NotFound):
        start_job(system, "no.such.kind", "nothing")
    assert BackgroundJob.objects.for_tenant(system.tenant).count() == 0


def test_the_input_file_is_stored_with_the_job(system):
    job = start(system, input_name="customers.csv", input_content=b"name\n")
    stored = _stored(job)
    assert stored.input_file.name.startswith(f"jobs/{system.tenant.pk}/customers")
    assert stored.input_file.read() == b"name\n"


# --- progress ------------------------------------------------------------------------------
def test_progress_writes_are_throttled(system, monkeypatch):
    # given: a long interval between progress writes
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 3600)
    job = start(system)
    BackgroundJob.objects.for_tenant(job.tenant_id).filter(pk=job.pk).update(
        status=BackgroundJob.Status.RUNNING
    )
    progress = Progress(_stored(job))

    # when: the total is set and 100 steps are reported
    with CaptureQueriesContext(connection) as queries:
        progress.set_total(100)
        for _step in range(100):
            progress.advance()

    # then: one write (the total, always written); the steps stay in memory
    assert len(queries) == 1
    assert (_stored(job).done, _stored(job).total) == (0, 100)
    assert progress.job.done == 100


def test_without_throttling_every_step_is_written(system, monkeypatch):
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 0)
    job = start(system)
    BackgroundJob.objects.for_tenant(job.tenant_id).filter(pk=job.pk).update(
        status=BackgroundJob.Status.RUNNING
    )
    progress = Progress(_stored(job))
    progress.set_total(4)
    progress.advance(3)
    assert _stored(job).done == 3
    assert _stored(job).percent == 75


def test_progress_inside_the_runners_transaction_is_written_when_the_job_ends(system, monkeypatch):
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL", 0)
    job = start(system, "in_transaction")
    finished = execute_job(job.tenant_id, job.pk)
    # inside the transaction nothing was written to the job row (it would be invisible and
    # lock the row against a cancel) ...
    assert [call["stored_done"] for call in calls[1:]] == [0, 0, 0, 0, 0]
    # ... and the job ends with its full count
    assert (finished.status, finished.done, finished.total) == ("succeeded", 5, 5)


@pytest.mark.parametrize(
    ("status", "done", "total", "percent"),
    [
        ("queued", 0, None, None),
        ("running", 0, 0, None),
        ("running", 1, 3, 33),
        ("running", 5, 3, 100),
        ("succeeded", 0, None, 100),
        ("failed", 2, 4, 50),
    ],
)
def test_percent(status, done, total, percent):
    assert BackgroundJob(status=status, done=done, total=total).percent == percent


# --- cancelling ------------------------------------------------------------------------------
def test_a_cancelled_queued_job_never_runs(system):
    job = start(system)
    cancelled = cancel_job(system, job)
    assert cancelled.status == BackgroundJob.Status.CANCELLED
    assert cancelled.finished_at is not None
    assert execute_job(job.tenant_id, job.pk) is None
    assert calls == []
    assert AuditEntry.objects.for_tenant(system.tenant).filter(action="job.cancelled").count() == 1


def test_a_running_job_stops_at_its_next_progress_report(system):
    job = start(system, "cancel_midway")
    finished = execute_job(job.tenant_id, job.pk)
    assert finished.status == BackgroundJob.Status.CANCELLED
    assert finished.result == {}
    assert {"reached": "after cancel"} not in calls


def test_a_job_cancelled_inside_its_transaction_rolls_its_writes_back(system):
    job = start(system, "cancelled_before_commit")
    finished = execute_job(job.tenant_id, job.pk)
    assert finished.status == BackgroundJob.Status.CANCELLED
    assert finished.label == "test cancelled_before_commit"


def test_a_finished_job_cannot_be_cancelled(system):
    job = start(system)
    execute_job(job.tenant_id, job.pk)
    with pytest.raises(Conflict):
        cancel_job(system, job)
    assert _stored(job).status == BackgroundJob.Status.SUCCEEDED


def test_only_the_starter_or_an_admin_may_cancel(tenant, sales_staff, admin_staff, actor_of):
    other_sales = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="sales2")
    job = start(actor_of(sales_staff))
    with pytest.raises(NotFound):
        cancel_job(services.actor_for_staff(other_sales), job)
    assert cancel_job(actor_of(admin_staff), job).status == BackgroundJob.Status.CANCELLED


# --- failures --------------------------------------------------------------------------------
def test_a_service_error_fails_the_job_with_its_message_and_details(system):
    job = start(system, "service_error")
    finished = execute_job(job.tenant_id, job.pk)
    assert finished.status == BackgroundJob.Status.FAILED
    assert finished.error == "Row 2 is bad"
    assert finished.result == {"errors": [{"row": 2}]}


def test_a_huge_error_report_is_cut_short_in_the_result(system):
    job = start(system, "huge_error")
    finished = execute_job(job.tenant_id, job.pk)
    assert len(finished.result["errors"]) == jobs.MAX_RESULT_ITEMS
    assert finished.result["errors_truncated"] is True
    assert finished.result["count"] == 2500


def test_a_bug_fails_the_job_with_a_plain_message_and_keeps_the_trace(system):
    job = start(system, "bug")
    finished = execute_job(job.tenant_id, job.pk)
    assert finished.status == BackgroundJob.Status.FAILED
    assert finished.error == gettext(
        "The job failed unexpectedly; the details are in the worker's log."
    )
    assert "ZeroDivisionError: oops" in finished.result["trace"]


# --- the starter's rights ----------------------------------------------------------------------
def test_the_job_runs_with_the_starters_rights(tenant, sales_staff, actor_of):
    job = start(actor_of(sales_staff))
    execute_job(job.tenant_id, job.pk)
    actor = calls[0]["actor"]
    assert actor.staff == sales_staff
    assert actor.data_scope == DataScope.OWN
    assert actor.has_perm("customers.view_customer")
    assert not actor.has_perm("tenancy.change_staff")
    assert not actor.is_superuser


def test_rights_are_those_at_the_start_even_if_the_role_changes_later(
    tenant, sales_staff, actor_of
):
    job = start(actor_of(sales_staff))
    # when: the staff is promoted before the job runs
    services.update_staff(sales_staff, by=services.system_actor(tenant), role_codes=["admin"])
    execute_job(job.tenant_id, job.pk)
    # then: the job still sees what the sales staff saw when they started it
    assert calls[0]["actor"].data_scope == DataScope.OWN


def test_a_job_of_a_staff_who_is_gone_sees_nothing(tenant, sales_staff, actor_of):
    job = start(actor_of(sales_staff))
    params = {**job.params, "_actor": {**job.params["_actor"], "staff_id": 999_999}}
    BackgroundJob.objects.for_tenant(tenant).filter(pk=job.pk).update(params=params)
    actor = job_actor(_stored(job))
    assert actor.staff is None and actor.data_scope == DataScope.OWN


# --- who sees which job ----------------------------------------------------------------------
def test_staff_see_their_own_jobs_and_admins_see_all(
    tenant, other_tenant, sales_staff, admin_staff, actor_of
):
    other_sales = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="sales2")
    mine = start(actor_of(sales_staff))
    theirs = start(services.actor_for_staff(other_sales))
    foreign = start(services.system_actor(other_tenant))

    assert list(visible_jobs(actor_of(sales_staff))) == [mine]
    assert set(visible_jobs(actor_of(admin_staff))) == {mine, theirs}
    with pytest.raises(NotFound):
        job_for(actor_of(sales_staff), theirs.pk)
    with pytest.raises(NotFound):
        job_for(actor_of(admin_staff), foreign.pk)
    with pytest.raises(NotFound):
        job_for(actor_of(admin_staff), "not-a-number")
    assert job_for(actor_of(admin_staff), str(mine.pk)) == mine


# --- output files -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("script", "name", "size"), [("output_bytes", "report", 8), ("output_stream", "big", 2000)]
)
def test_a_runner_stores_its_output_file(system, script, name, size):
    job = start(system, script)
    finished = execute_job(job.tenant_id, job.pk)
    stored = job_file(finished)
    assert stored.name.startswith(f"jobs/{system.tenant.pk}/{name}")
    assert stored.size == size


def test_a_job_without_output_has_nothing_to_download(system):
    job = start(system)
    finished = execute_job(job.tenant_id, job.pk)
    with pytest.raises(NotFound):
        job_file(finished)


def test_files_expire_after_seven_days(system):
    old = start(system, "output_bytes", input_name="in.csv", input_content=b"x")
    new = start(system, "output_bytes")
    for job in (old, new):
        execute_job(job.tenant_id, job.pk)
    eight_days_ago = timezone.now() - timedelta(days=8)
    BackgroundJob.objects.for_tenant(system.tenant).filter(pk=old.pk).update(
        finished_at=eight_days_ago
    )
    old_paths = [_stored(old).output_file.path, _stored(old).input_file.path]

    assert jobs.expire_job_files() == 1

    expired = _stored(old)
    assert (expired.output_file.name, expired.input_file.name) == ("", "")
    assert expired.result["files_expired"] is True
    assert not any(__import__("os").path.exists(path) for path in old_paths)
    with pytest.raises(NotFound):
        job_file(expired)
    assert job_file(_stored(new)).size == 8
    assert jobs.expire_job_files() == 0  # nothing left to do


def test_a_deleted_file_answers_not_found(system):
    job = start(system, "output_bytes")
    finished = execute_job(job.tenant_id, job.pk)
    finished.output_file.storage.delete(finished.output_file.name)
    with pytest.raises(NotFound):
        job_file(finished)


# --- lost and interrupted jobs -------------------------------------------------------------------
def test_lost_queued_jobs_are_queued_again_and_interrupted_ones_fail(system):
    lost = start(system)
    fresh = start(system)
    interrupted = start(system)
    now = timezone.now()
    jobs_of_tenant = BackgroundJob.objects.for_tenant(system.tenant)
    jobs_of_tenant.filter(pk=lost.pk).update(created_at=now - timedelta(minutes=30))
    jobs_of_tenant.filter(pk=interrupted.pk).update(
        status=BackgroundJob.Status.RUNNING, started_at=now - timedelta(hours=7)
    )

    assert jobs.recover_lost_jobs() == {"requeued": 1, "failed": 1}

    assert _stored(lost).status == BackgroundJob.Status.SUCCEEDED  # ran (tasks run inline)
    assert _stored(fresh).status == BackgroundJob.Status.QUEUED
    assert _stored(interrupted).status == BackgroundJob.Status.FAILED
    assert _stored(interrupted).error == gettext(
        "The job was interrupted (its worker stopped); start it again."
    )


def test_housekeeping_is_a_periodic_task():
    from huey.contrib.djhuey import HUEY

    assert "job_housekeeping" in {task.name for task in HUEY._registry.periodic_tasks}
