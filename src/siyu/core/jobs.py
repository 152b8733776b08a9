"""Background jobs: long work a person starts (imports, exports, bulk tagging, ...) that runs
in the task queue and reports progress to the console's progress bars and the CLI.

A domain registers a runner for a kind of job::

    @job_runner("customers.export")
    def run_export(job: BackgroundJob, progress: Progress) -> dict:
        actor = job_actor(job)          # the rights of whoever started it
        progress.set_total(n)
        for chunk in ...:
            ...
            progress.advance(len(chunk))
        progress.save_output("customers.xlsx", data)
        return {"rows": n}              # becomes job.result

and starts one with ``start_job(actor, "customers.export", label, params=...)``. This module is
the only writer of ``BackgroundJob``. A job runs at most once to completion: the task claims
it (queued → running) in one conditional UPDATE, so a redelivered task does nothing.

Who sees a job: its starter, and staff who may manage jobs (``core.change_backgroundjob``,
i.e. administrators); ``visible_jobs`` / ``job_for`` are the one place that decides, for the
console, the API and the download view alike.

Progress is written to the job row outside the runner's own transactions only: a runner that
does its writes in one ``transaction.atomic()`` block (an all-or-nothing import) keeps
counting in memory inside it, and the count lands when the job finishes. Writing the job row
inside that transaction would show nothing to anyone before the commit, and would hold a lock
on the row that a "cancel" click then waits on.

Files: uploaded inputs and generated outputs live in the default storage under
``jobs/<tenant id>/`` (never under a public URL) and are deleted ``FILE_RETENTION`` after the
job finished, by a periodic sweep that also re-queues jobs whose task was lost and fails jobs
that a dead worker left running.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

from django.core.files.base import ContentFile, File
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from siyu.core.audit import record_audit
from siyu.core.errors import Conflict, NotFound, ServiceError
from siyu.core.models import BackgroundJob
from siyu.core.scoping import DataScope
from siyu.core.tasks import on_commit_task

logger = logging.getLogger(__name__)

Runner = Callable[[BackgroundJob, "Progress"], dict[str, Any] | None]
_runners: dict[str, Runner] = {}

# Progress is written at most this often (seconds): a bar needs no more, the database less.
PROGRESS_INTERVAL = 0.5
# Uploaded and generated files hold personal data: they are deleted this long after the job.
FILE_RETENTION = timedelta(days=7)
# A queued job still waiting after this long lost its task (e.g. the queue was wiped): queue
# it again (claiming is idempotent, so a duplicate does nothing).
REQUEUE_AFTER = timedelta(minutes=10)
# A job "running" for longer than this lost its worker (a crash, a deploy): mark it failed.
STALE_AFTER = timedelta(hours=6)
# What a failed job keeps of a service error's details in ``result`` (the full report is the
# runner's output file).
MAX_RESULT_ITEMS = 1000
ACTIVE_STATUSES = (BackgroundJob.Status.QUEUED, BackgroundJob.Status.RUNNING)
MANAGE_PERMISSION = "core.change_backgroundjob"


def job_runner(kind: str) -> Callable[[Runner], Runner]:
    """Register the function that does the work of jobs of ``kind``."""

    def register(function: Runner) -> Runner:
        _runners[kind] = function
        return function

    return register


def _actor_snapshot(actor: Any) -> dict[str, Any]:
    return {
        "staff_id": actor.staff_id,
        "data_scope": str(actor.data_scope),
        "department_ids": sorted(actor.department_ids),
        "permission_patterns": list(actor.permission_patterns),
        "is_superuser": bool(actor.is_superuser),
        "channel": actor.channel,
    }


def job_actor(job: BackgroundJob) -> Any:
    """The rights of whoever started the job, as they were when they started it: an export
    started by a sales staff contains their customers only, whenever it runs."""
    from siyu.tenancy.actor import Actor
    from siyu.tenancy.models import Staff

    snapshot = job.params.get("_actor") or {}
    staff = None
    if snapshot.get("staff_id"):
        staff = Staff.objects.for_tenant(job.tenant_id).filter(pk=snapshot["staff_id"]).first()
    return Actor(
        tenant=job.tenant,
        staff=staff,
        data_scope=DataScope(snapshot.get("data_scope") or DataScope.OWN),
        department_ids=frozenset(snapshot.get("department_ids") or ()),
        permission_patterns=tuple(snapshot.get("permission_patterns") or ()),
        is_superuser=bool(snapshot.get("is_superuser")),
        channel=snapshot.get("channel") or "system",
    )


def start_job(
    actor: Any,
    kind: str,
    label: str,
    *,
    params: dict[str, Any] | None = None,
    input_name: str | None = None,
    input_content: bytes | None = None,
    total: int | None = None,
    enqueue: bool = True,
) -> BackgroundJob:
    """Create a job for ``actor`` and queue it once the transaction commits (``enqueue=False``:
    the caller runs it itself with ``execute_job``, as the CLI does to show its progress)."""
    if kind not in _runners:
        raise NotFound(_("Unknown kind of job: %(kind)s") % {"kind": kind})
    with transaction.atomic():
        job = BackgroundJob.objects.for_tenant(actor.tenant).create(
            tenant=actor.tenant,
            kind=kind,
            label=label[:200],
            params={**(params or {}), "_actor": _actor_snapshot(actor)},
            created_by=actor.staff,
            total=total,
        )
        if input_content is not None:
            job.input_file.save(input_name or "input", ContentFile(input_content), save=True)
    if enqueue:
        on_commit_task(run_background_job, job.tenant_id, job.pk)
    return job


def cancel_job(actor: Any, job: BackgroundJob | int) -> BackgroundJob:
    """Cancel a job that has not finished; a running one stops at its next progress report.

    Only whoever may see the job may cancel it (another staff's job is "not found").
    """
    job = job_for(actor, getattr(job, "pk", job))
    with transaction.atomic():
        updated = (
            BackgroundJob.objects.for_tenant(actor.tenant)
            .filter(pk=job.pk, status__in=ACTIVE_STATUSES)
            .update(status=BackgroundJob.Status.CANCELLED, finished_at=timezone.now())
        )
        if not updated:
            raise Conflict(_("This job has already finished."))
        record_audit(actor, "job.cancelled", job)
    job.refresh_from_db()
    return job


# --- who sees which job -------------------------------------------------------------------
def may_manage_jobs(actor: Any) -> bool:
    """Administrators see, cancel and download every job of their tenant."""
    return bool(actor.has_perm(MANAGE_PERMISSION))


def visible_jobs(actor: Any) -> QuerySet:
    """The jobs ``actor`` may see: their own, or all of the tenant's for administrators.

    Not the role's data scope: a job's output is what its starter could see, so a manager
    of the same department must not download a colleague's export through it.
    """
    jobs = BackgroundJob.objects.for_tenant(actor.tenant)
    if may_manage_jobs(actor):
        return jobs
    if actor.staff_id is None:
        return jobs.none()
    return jobs.filter(created_by_id=actor.staff_id)


def job_for(actor: Any, job_id: Any) -> BackgroundJob:
    """One job ``actor`` may see, or ``NotFound`` (also for other tenants' jobs)."""
    try:
        pk = int(job_id)
    except (TypeError, ValueError):
        pk = 0
    job = visible_jobs(actor).select_related("created_by").filter(pk=pk).first() if pk else None
    if job is None:
        raise NotFound(_("Job not found"), details={"id": job_id})
    return job


def job_file(job: BackgroundJob, which: str = "output") -> Any:
    """The job's output (or input) file field, or ``NotFound`` when there is none (yet, or
    any more: files expire)."""
    field_file = job.output_file if which == "output" else job.input_file
    if which not in ("output", "input") or not field_file:
        raise NotFound(_("This job has no file to download"), details={"id": job.pk})
    if not field_file.storage.exists(field_file.name):
        raise NotFound(_("The file of this job has expired"), details={"id": job.pk})
    return field_file


class JobCancelled(Exception):
    """Raised inside a runner (by ``Progress``) when someone cancelled the job."""


def _atomic_depth() -> int:
    return len(connection.atomic_blocks)


@dataclass
class Progress:
    """What a runner reports: the total, the work done, and an output file.

    Writes to the job row are throttled (``PROGRESS_INTERVAL``) and skipped inside a
    transaction the runner opened (see the module docstring); each write also notices a
    cancellation and stops the runner with ``JobCancelled``.
    """

    job: BackgroundJob
    # Told every step, unthrottled (the CLI's progress bar): ``listener(done, total)``.
    listener: Callable[[int, int | None], None] | None = None
    _last_saved: float = -math.inf
    # Transactions already open when the job started (a test's, or none in the worker).
    _base_depth: int = field(default_factory=_atomic_depth)

    def set_total(self, total: int) -> None:
        self.job.total = max(0, int(total))
        self._tell()
        self._save(force=True)

    def advance(self, amount: int = 1) -> None:
        self.job.done += amount
        self._tell()
        self._save()

    def set_done(self, done: int) -> None:
        self.job.done = done
        self._tell()
        self._save()

    def _tell(self) -> None:
        if self.listener is not None:
            self.listener(self.job.done, self.job.total)

    def check_cancelled(self) -> None:
        """Stop now (``JobCancelled``) if someone cancelled the job.

        Inside the runner's transaction this locks the job row, so a runner that calls it
        just before committing either sees the cancellation (and rolls back) or makes the
        cancel wait until its work is committed.
        """
        if _atomic_depth() <= self._base_depth:
            self._save(force=True)
            return
        status = (
            BackgroundJob.objects.for_tenant(self.job.tenant_id)
            .select_for_update()
            .filter(pk=self.job.pk)
            .values_list("status", flat=True)
            .first()
        )
        if status != BackgroundJob.Status.RUNNING:
            raise JobCancelled()

    def save_output(self, filename: str, content: bytes | IO[bytes]) -> None:
        """Store the job's result file: bytes, or an open binary file (streamed, so a large
        export never sits in memory)."""
        data = ContentFile(content) if isinstance(content, bytes) else File(content)
        self.job.output_file.save(filename, data, save=False)
        BackgroundJob.objects.for_tenant(self.job.tenant_id).filter(pk=self.job.pk).update(
            output_file=self.job.output_file.name
        )

    def _save(self, *, force: bool = False) -> None:
        if _atomic_depth() > self._base_depth:
            return  # inside the runner's own transaction: counted, written at the end
        now = time.monotonic()
        if not force and now - self._last_saved < PROGRESS_INTERVAL:
            return
        self._last_saved = now
        still_running = (
            BackgroundJob.objects.for_tenant(self.job.tenant_id)
            .filter(pk=self.job.pk, status=BackgroundJob.Status.RUNNING)
            .update(done=self.job.done, total=self.job.total)
        )
        if not still_running:
            raise JobCancelled()


def execute_job(
    tenant_id: int,
    job_id: int,
    *,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> BackgroundJob | None:
    """Run a queued job to its end in this process (the task body; the CLI and tests call it
    directly, the CLI with ``on_progress`` for its progress bar).

    Returns the finished job, or None when it was not queued (already taken or cancelled).
    """
    claimed = (
        BackgroundJob.objects.for_tenant(tenant_id)
        .filter(pk=job_id, status=BackgroundJob.Status.QUEUED)
        .update(status=BackgroundJob.Status.RUNNING, started_at=timezone.now())
    )
    if not claimed:
        return None
    job = BackgroundJob.objects.for_tenant(tenant_id).select_related("tenant").get(pk=job_id)
    progress = Progress(job, listener=on_progress)
    try:
        result = _runners[job.kind](job, progress) or {}
    except JobCancelled:
        logger.info("job %s (%s) cancelled", job.pk, job.kind)
        job.refresh_from_db()
        return job
    except ServiceError as error:
        _finish(job, BackgroundJob.Status.FAILED, error=error.message, result=_details(error))
    except Exception:  # a bug: keep the trace for the operator, show a plain message
        logger.exception("job %s (%s) failed", job.pk, job.kind)
        _finish(
            job,
            BackgroundJob.Status.FAILED,
            error=_("The job failed unexpectedly; the details are in the worker's log."),
            result={"trace": traceback.format_exc(limit=5)[-4000:]},
        )
    else:
        _finish(job, BackgroundJob.Status.SUCCEEDED, result=result)
    job.refresh_from_db()
    return job


def _details(error: ServiceError) -> dict[str, Any]:
    """A service error's details as the failed job's ``result``, long lists cut short."""
    details = error.details if isinstance(error.details, dict) else {"details": error.details}
    shortened: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, list) and len(value) > MAX_RESULT_ITEMS:
            shortened[key] = value[:MAX_RESULT_ITEMS]
            shortened[f"{key}_truncated"] = True
        else:
            shortened[key] = value
    return shortened


def _finish(
    job: BackgroundJob, status: str, *, error: str = "", result: dict[str, Any] | None = None
) -> None:
    fields: dict[str, Any] = {
        "status": status,
        "error": error,
        "result": result or {},
        "finished_at": timezone.now(),
        "done": job.done,
    }
    if status == BackgroundJob.Status.SUCCEEDED and job.total is not None:
        fields["done"] = job.total
    BackgroundJob.objects.for_tenant(job.tenant_id).filter(
        pk=job.pk, status=BackgroundJob.Status.RUNNING
    ).update(**fields)


@db_task(retries=2, retry_delay=30)
def run_background_job(tenant_id: int, job_id: int) -> str | None:
    job = execute_job(tenant_id, job_id)
    return job.status if job is not None else None


# --- housekeeping ---------------------------------------------------------------------------
def _all_tenants() -> QuerySet:
    return BackgroundJob.objects.unscoped("housekeeping of every tenant's background jobs")


def expire_job_files(now: Any = None) -> int:
    """Delete the input and output files of jobs that finished ``FILE_RETENTION`` ago.

    The row stays (the history of who imported or exported what); ``result["files_expired"]``
    says why its download is gone. Returns the number of jobs whose files were deleted.
    """
    cutoff = (now or timezone.now()) - FILE_RETENTION
    expired = 0
    old_jobs = (
        _all_tenants()
        .filter(finished_at__lt=cutoff)
        .exclude(Q(input_file="") & Q(output_file=""))
        .order_by("pk")
    )
    for job in old_jobs.iterator(chunk_size=200):
        for field_file in (job.input_file, job.output_file):
            if field_file:
                field_file.storage.delete(field_file.name)
        BackgroundJob.objects.for_tenant(job.tenant_id).filter(pk=job.pk).update(
            input_file="", output_file="", result={**(job.result or {}), "files_expired": True}
        )
        expired += 1
    return expired


def recover_lost_jobs(now: Any = None) -> dict[str, int]:
    """Queue again the jobs whose task was lost; fail the ones a dead worker left running."""
    now = now or timezone.now()
    lost = list(
        _all_tenants()
        .filter(status=BackgroundJob.Status.QUEUED, created_at__lt=now - REQUEUE_AFTER)
        .values_list("tenant_id", "pk")[:500]
    )
    for tenant_id, job_id in lost:
        run_background_job(tenant_id, job_id)
    stale = (
        _all_tenants()
        .filter(status=BackgroundJob.Status.RUNNING, started_at__lt=now - STALE_AFTER)
        .update(
            status=BackgroundJob.Status.FAILED,
            finished_at=now,
            error=_("The job was interrupted (its worker stopped); start it again."),
        )
    )
    return {"requeued": len(lost), "failed": stale}


@db_periodic_task(crontab(minute="*/10"))
def job_housekeeping() -> dict[str, int]:
    """Every ten minutes: expire old files, recover lost and interrupted jobs."""
    return {"expired": expire_job_files(), **recover_lost_jobs()}
