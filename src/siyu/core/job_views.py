"""Downloading a background job's file (an export, an import's error report).

Job files hold personal data, so they are never served from a public URL: this view (the
console, by session) and ``GET /api/v1/jobs/{id}/download`` (by API key) both go through
``job_file_response``, which hands the file only to whoever may see the job — its starter,
or an administrator of the same tenant (``siyu.core.jobs.visible_jobs``) — answers 404 to
anyone else (another tenant, another staff: existence is not leaked), and writes every
download to the audit log.
"""

from __future__ import annotations

import mimetypes
import os

from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse

from siyu.core.audit import record_audit
from siyu.core.errors import NotFound
from siyu.core.jobs import job_file, job_for
from siyu.core.models import BackgroundJob

CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def download_name(job: BackgroundJob, name: str) -> str:
    """The file's name as the user gets it (storage may have added a suffix)."""
    base = os.path.basename(name)
    stem, extension = os.path.splitext(base)
    if "_" in stem and len(stem.rsplit("_", 1)[1]) == 7:  # Django's "_AbC1234" de-duplication
        stem = stem.rsplit("_", 1)[0]
    return f"{stem}{extension}"


def job_file_response(actor, job_id: int) -> FileResponse:
    """The job's output file as an attachment, if ``actor`` may see the job (else
    ``NotFound``); the download is audited."""
    job = job_for(actor, job_id)
    field_file = job_file(job)
    name = download_name(job, field_file.name)
    extension = os.path.splitext(name)[1].lower()
    content_type = CONTENT_TYPES.get(extension) or (
        mimetypes.guess_type(name)[0] or "application/octet-stream"
    )
    record_audit(actor, "job.downloaded", job, changes={"file": [None, name]})
    response = FileResponse(
        field_file.open("rb"), as_attachment=True, filename=name, content_type=content_type
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def download(request: HttpRequest, job_id: int) -> HttpResponse:
    """The console's download link (``/console/jobs/<id>/download``)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url="admin:login")
    actor = getattr(request, "actor", None)
    if not actor:
        raise Http404
    try:
        return job_file_response(actor, job_id)
    except NotFound as error:
        raise Http404(error.message) from error
