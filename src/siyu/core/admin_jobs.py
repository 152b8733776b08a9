"""The console's background-jobs page (数据 › 后台任务): imports, exports, bulk tagging …

Each staff sees the jobs they started; administrators (``core.change_backgroundjob``) see
the tenant's. A job's row shows its status and a live progress bar: while the job is queued
or running, the cell asks the server for itself again every two seconds (htmx, which unfold
loads on every page) and stops once the job has finished; then it shows the result, the
error, the download link (an export, or a failed import's report) and, before that, a cancel
button. The job's page lists a failed import's problems (row, column, reason, value).

Domains add the pages that start their jobs with ``add_job_page`` (e.g. the customers'
import and export forms): they are served under this page's URL, checked by the console's
login, and put in the sidebar for the staff allowed to use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.decorators import display

from siyu.core.console import (
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
    add_page,
    console_actor,
)
from siyu.core.errors import NotFound, ServiceError
from siyu.core.jobs import ACTIVE_STATUSES, cancel_job, job_for, visible_jobs
from siyu.core.models import BackgroundJob

POLL_SECONDS = 2
ERRORS_SHOWN = 200  # problems of a failed import listed on its page (all are in the report)
STATUS_COLOURS = {
    BackgroundJob.Status.QUEUED: "info",
    BackgroundJob.Status.RUNNING: "primary",
    BackgroundJob.Status.SUCCEEDED: "success",
    BackgroundJob.Status.FAILED: "danger",
    BackgroundJob.Status.CANCELLED: "warning",
}
# How the numbers a job reports in its result are named on the page.
RESULT_LABELS = {
    "rows": _("rows"),
    "customers": _("customers"),
    "created": _("created"),
    "updated": _("updated"),
    "unchanged": _("unchanged"),
    "tagged": _("tagged"),
    "untagged": _("untagged"),
    "skipped": _("skipped"),
    "error_count": _("problems"),
}


# --- pages that start jobs (contributed by domains) --------------------------------------------
@dataclass(frozen=True)
class JobPage:
    slug: str
    title: Any
    view: Callable[[HttpRequest], HttpResponse]
    allowed: Callable[[Any], bool]  # given the actor


_job_pages: dict[str, JobPage] = {}


def add_job_page(
    slug: str,
    *,
    title: Any,
    view: Callable[[HttpRequest], HttpResponse],
    allowed: Callable[[Any], bool],
    section: str,
    icon: str,
) -> None:
    """Serve ``view`` at ``/console/core/backgroundjob/start/<slug>/`` for staff whose actor
    passes ``allowed``, and put it in the sidebar's ``section``."""
    _job_pages[slug] = JobPage(slug, title, view, allowed)
    add_page(
        section,
        title=title,
        icon=icon,
        link=lambda request: job_page_url(slug),
        allowed=lambda request: _page_allowed(request, slug),
    )


def job_page_url(slug: str) -> str:
    return reverse("admin:core_backgroundjob_start", args=[slug])


def _page_allowed(request: HttpRequest, slug: str) -> bool:
    actor = getattr(request, "actor", None)
    page = _job_pages.get(slug)
    return bool(actor) and page is not None and page.allowed(actor)


def jobs_url() -> str:
    return reverse("admin:core_backgroundjob_changelist")


# --- the jobs page -----------------------------------------------------------------------------
@admin.register(BackgroundJob)
class BackgroundJobAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("label", "progress_cell", "started_by", "created_at")
    list_display_links = ("label",)
    list_filter = ("status", "kind")
    search_fields = ("label",)
    list_select_related = ("created_by",)
    list_per_page = 25
    change_list_template = "core/backgroundjob_change_list.html"
    change_form_template = "core/backgroundjob_change_form.html"
    fields = (
        "label",
        "kind",
        "progress_cell",
        "error",
        "problems_table",
        "started_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = ("progress_cell", "problems_table", "started_by")

    # -- rows and rights ------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest):
        return visible_jobs(console_actor(request)).select_related("created_by")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Every staff follows the jobs they started (the queryset decides which)."""
        return bool(getattr(request, "actor", None))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        actor = console_actor(request)
        starters = [
            {"title": page.title, "url": job_page_url(page.slug)}
            for page in _job_pages.values()
            if page.allowed(actor)
        ]
        return super().changelist_view(request, {**(extra_context or {}), "job_starters": starters})

    # -- columns ----------------------------------------------------------------------------------
    @display(description=_("started by"), ordering="created_by__name")
    def started_by(self, job: BackgroundJob) -> str:
        return job.created_by.name if job.created_by else str(_("system"))

    @display(description=_("progress"))
    def progress_cell(self, job: BackgroundJob) -> str:
        return render_progress(job)

    @display(description=_("problems"))
    def problems_table(self, job: BackgroundJob) -> str:
        errors = (job.result or {}).get("errors") or []
        if not errors:
            return "-"
        count = (job.result or {}).get("error_count", len(errors))
        rows = format_html_join(
            "",
            "<tr><td class='pr-4'>{}</td><td class='pr-4'>{}</td><td class='pr-4'>{}</td>"
            "<td>{}</td></tr>",
            (
                (e.get("row", ""), e.get("column", ""), e.get("reason", ""), e.get("value", ""))
                for e in errors[:ERRORS_SHOWN]
            ),
        )
        note = ""
        if count > min(len(errors), ERRORS_SHOWN):
            note = _("The first %(shown)d of %(count)d problems; download the report for all.") % {
                "shown": min(len(errors), ERRORS_SHOWN),
                "count": count,
            }
        return format_html(
            "<table data-job-problems><thead><tr><th class='pr-4 text-left'>{}</th>"
            "<th class='pr-4 text-left'>{}</th><th class='pr-4 text-left'>{}</th>"
            "<th class='text-left'>{}</th></tr></thead><tbody>{}</tbody></table><p>{}</p>",
            _("row"),
            _("column"),
            _("reason"),
            _("value"),
            rows,
            note,
        )

    # -- progress, cancel, start pages ------------------------------------------------------------
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:job_id>/progress/",
                wrap(self.progress_view),
                name="core_backgroundjob_progress",
            ),
            path("<int:job_id>/cancel/", wrap(self.cancel_view), name="core_backgroundjob_cancel"),
            path("start/<slug:slug>/", wrap(self.start_view), name="core_backgroundjob_start"),
            *super().get_urls(),
        ]

    def _job(self, request: HttpRequest, job_id: int) -> BackgroundJob:
        try:
            return job_for(console_actor(request), job_id)
        except NotFound as error:
            raise Http404(error.message) from error

    def progress_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        """The job's progress cell, for the page to swap in (htmx polling)."""
        return HttpResponse(render_progress(self._job(request, job_id)))

    def cancel_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self._job(request, job_id)
        try:
            job = cancel_job(console_actor(request), job)
        except ServiceError as error:
            messages.error(request, error.message)
            job = self._job(request, job_id)
        if request.headers.get("HX-Request"):
            return HttpResponse(render_progress(job))
        return redirect(jobs_url())

    def start_view(self, request: HttpRequest, slug: str) -> HttpResponse:
        page = _job_pages.get(slug)
        if page is None:
            raise Http404
        if not page.allowed(console_actor(request)):
            messages.error(request, _("Your role does not allow this."))
            return redirect(jobs_url())
        return page.view(request)


def render_progress(job: BackgroundJob) -> str:
    """The cell of a job's status, progress bar, counts, result and actions; while the job is
    active it polls for itself (``hx-get``) and swaps itself in."""
    active = job.status in ACTIVE_STATUSES
    percent = job.percent
    context = {
        "job": job,
        "active": active,
        "percent": percent,
        "colour": STATUS_COLOURS.get(job.status, ""),
        "poll_url": reverse("admin:core_backgroundjob_progress", args=[job.pk]),
        "poll_seconds": POLL_SECONDS,
        "cancel_url": reverse("admin:core_backgroundjob_cancel", args=[job.pk]),
        "detail_url": reverse("admin:core_backgroundjob_change", args=[job.pk]),
        "download_url": reverse("job-download", args=[job.pk]) if job.output_file else "",
        "summary": result_summary(job),
    }
    return render_to_string("core/job_progress.html", context)


def result_summary(job: BackgroundJob) -> str:
    """The job's result in a few words: "rows 120 · updated 118 · unchanged 2"."""
    result = job.result or {}
    parts = [
        f"{RESULT_LABELS[key]} {result[key]}"
        for key in RESULT_LABELS
        if isinstance(result.get(key), int) and not isinstance(result.get(key), bool)
    ]
    if result.get("dry_run"):
        parts.append(str(_("dry run: nothing written")))
    if result.get("files_expired"):
        parts.append(str(_("files expired")))
    return " · ".join(parts)


add_page(
    "data",
    title=_("Background jobs"),
    icon="pending_actions",
    link=lambda request: jobs_url(),
    allowed=lambda request: bool(getattr(request, "actor", None)),
)
