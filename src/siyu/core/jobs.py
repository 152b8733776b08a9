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
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from huey.contrib.djhuey import db_task

from siyu.core.errors import Conflict, NotFound, ServiceError
from siyu.core.models import BackgroundJob
from siyu.core.scoping import DataScope
from siyu.core.tasks import on_commit_task

logger = logging.getLogger(__name__)

Runner = Callable[[BackgroundJob, "Progress"], dict[str, Any] | None]
_runners: dict[str, Runner] = {}

# Progress is written at most this often (seconds): a bar needs no more, the database less.
PROGRESS_INTERVAL = 0.5


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
) -> BackgroundJob:
    """Create a job for ``actor`` and queue it once the transaction commits."""
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
    on_commit_task(run_background_job, job.tenant_id, job.pk)
    return job


def cancel_job(actor: Any, job: BackgroundJob) -> BackgroundJob:
    """Cancel a job that has not finished; a running one stops at its next progress report."""
    updated = (
        BackgroundJob.objects.for_tenant(actor.tenant)
        .filter(pk=job.pk, status__in=[BackgroundJob.Status.QUEUED, BackgroundJob.Status.RUNNING])
        .update(status=BackgroundJob.Status.CANCELLED, finished_at=timezone.now())
    )
    if not updated:
        raise Conflict(_("This job has already finished."))
    job.refresh_from_db()
    return job


class JobCancelled(Exception):
    """Raised inside a runner (by ``Progress``) when someone cancelled the job."""


@dataclass
class Progress:
    """What a runner reports: the total, the work done, and an output file."""

    job: BackgroundJob
    _last_saved: float = 0.0

    def set_total(self, total: int) -> None:
        self.job.total = total
        self._save(force=True)

    def advance(self, amount: int = 1) -> None:
        self.job.done += amount
        self._save()

    def set_done(self, done: int) -> None:
        self.job.done = done
        self._save()

    def save_output(self, filename: str, content: bytes) -> None:
        self.job.output_file.save(filename, ContentFile(content), save=False)
        BackgroundJob.objects.for_tenant(self.job.tenant_id).filter(pk=self.job.pk).update(
            output_file=self.job.output_file.name
        )

    def _save(self, *, force: bool = False) -> None:
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


def execute_job(tenant_id: int, job_id: int) -> BackgroundJob | None:
    """Run a queued job to its end in this process (the task body; tests call it directly).

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
    progress = Progress(job)
    try:
        result = _runners[job.kind](job, progress) or {}
    except JobCancelled:
        logger.info("job %s (%s) cancelled", job.pk, job.kind)
        job.refresh_from_db()
        return job
    except ServiceError as error:
        _finish(job, BackgroundJob.Status.FAILED, error=error.message, result=error.details)
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
