"""API of background jobs: list them, follow one's progress, download its file, cancel it.

A caller sees the jobs it started (an API key acting as a staff: that staff's jobs) or, with
``core.change_backgroundjob`` (administrators, and keys acting as no staff), every job of
its tenant; any other job is a 404. Starting jobs belongs to each domain's API (e.g.
``POST /customers/imports``, ``POST /customers/exports``), which answer with the job.
"""

from datetime import datetime
from typing import Any, Literal

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from siyu.core.api_errors import error_responses
from siyu.core.api_support import CursorPagination, Id
from siyu.core.errors import Forbidden
from siyu.core.job_views import job_file_response
from siyu.core.jobs import cancel_job, job_for, visible_jobs
from siyu.core.models import BackgroundJob
from siyu.tenancy.actor import Actor

router = Router(tags=["jobs"])

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobOut(Schema):
    id: int
    kind: str = Field(examples=["customers.export"])
    label: str = Field(examples=["Export customers (XLSX)"])
    status: JobStatus
    done: int = Field(description="Work done so far (rows, customers, ...)")
    total: int | None = Field(description="All the work, once known")
    percent: int | None = Field(description="0-100, null while the total is unknown")
    result: dict[str, Any] = Field(
        description="What the job reports: counts when it succeeded; for a failed import "
        "the validation report (errors: row, column, reason, value)"
    )
    error: str = Field(description="Why it failed, in plain words")
    started_by: int | None = Field(description="Staff who started it")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    download_url: str | None = Field(
        description="GET it (same credentials) for the job's file: an export, or a failed "
        "import's report as CSV; null when there is none (or it expired after 7 days)"
    )

    @staticmethod
    def resolve_result(job: BackgroundJob) -> dict[str, Any]:
        # A bug's traceback is for the operator's log, not for API clients.
        return {key: value for key, value in (job.result or {}).items() if key != "trace"}

    @staticmethod
    def resolve_started_by(job: BackgroundJob) -> int | None:
        return job.created_by_id

    @staticmethod
    def resolve_download_url(job: BackgroundJob) -> str | None:
        if not job.output_file:
            return None
        return reverse("api:job_download", kwargs={"job_id": job.pk})


class JobFilters(Schema):
    status: JobStatus | None = Field(None, description="Only jobs in this status")
    kind: str | None = Field(None, max_length=60, description="Only this kind of job")


def job_actor_for(request: HttpRequest, scope: str) -> Actor:
    """The caller, if its API key (if any) carries ``scope``. No staff permission is needed
    to follow one's own jobs; which jobs are seen is decided by ``visible_jobs``."""
    actor: Actor = request.actor
    if actor.api_scopes is not None and scope not in actor.api_scopes:
        raise Forbidden(
            _("This API key lacks the scope '%(scope)s'") % {"scope": scope},
            details={"required_scope": scope},
        )
    return actor


@router.get(
    "/jobs",
    response={200: list[JobOut], **error_responses(400, 401, 403, 422)},
    summary="List background jobs",
)
@paginate(CursorPagination)
def list_jobs(request: HttpRequest, filters: Query[JobFilters]) -> QuerySet:
    """The caller's jobs (an administrator's: the whole tenant's), newest first."""
    jobs = visible_jobs(job_actor_for(request, "jobs:read"))
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.kind:
        jobs = jobs.filter(kind=filters.kind)
    return jobs


@router.get(
    "/jobs/{job_id}",
    response={200: JobOut, **error_responses(401, 403, 404, 422)},
    summary="Get a job and its progress",
)
def get_job(request: HttpRequest, job_id: Id) -> BackgroundJob:
    """Poll this for progress: ``done`` / ``total`` / ``percent`` and, at the end,
    ``status``, ``result`` and ``download_url``."""
    return job_for(job_actor_for(request, "jobs:read"), job_id)


@router.get(
    "/jobs/{job_id}/download",
    response={200: None, **error_responses(401, 403, 404, 422)},
    summary="Download a job's file",
    url_name="job_download",
    openapi_extra={
        "responses": {
            "200": {
                "description": "The file (CSV or XLSX) as an attachment",
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
def download_job_file(request: HttpRequest, job_id: Id) -> HttpResponse:
    return job_file_response(job_actor_for(request, "jobs:read"), job_id)


@router.post(
    "/jobs/{job_id}/cancel",
    response={200: JobOut, **error_responses(401, 403, 404, 409, 422)},
    summary="Cancel a job",
)
def cancel(request: HttpRequest, job_id: Id) -> BackgroundJob:
    """A queued job never runs; a running one stops at its next progress report (an import
    that is already writing finishes or rolls back as a whole). 409 if it has finished."""
    return cancel_job(job_actor_for(request, "jobs:write"), job_id)
