"""Console pages of the WeCom domain (the 设置 section): the history of WeCom syncs.

Read-only: ``SyncRun`` rows are written by ``siyu.wecom.sync`` while it runs. The list shows
each run's stage and a progress bar (the page reloads itself while one runs) and offers
"Sync now" (permission ``wecom.add_syncrun``), which queues a sync of the staff's tenant
through ``siyu.wecom.sync.request_sync``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.decorators import action, display
from unfold.forms import BaseDialogForm
from unfold.widgets import UnfoldBooleanSwitchWidget

from siyu.core.console import (
    DayRangeFilter,
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
    add_model_page,
    console_actor,
)
from siyu.core.errors import ServiceError
from siyu.wecom.models import SyncRun
from siyu.wecom.sync import STAGE_NAMES, request_sync, running_run

STATUS_COLOURS = {
    SyncRun.Status.RUNNING: "info",
    SyncRun.Status.SUCCEEDED: "success",
    SyncRun.Status.FAILED: "danger",
}
COUNTER_NAMES = (
    ("customers", _("customers")),
    ("follows", _("friendships")),
    ("groups", _("groups")),
    ("staff", _("staff")),
    ("calls", _("WeCom calls")),
)


class SyncNowForm(BaseDialogForm):
    full = forms.BooleanField(
        label=_("Full sync"),
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_(
            "A full sync also ends the friendships, groups and staff WeCom no longer has; "
            "an incremental one only adds and updates."
        ),
    )


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = (
        "started_at",
        "kind",
        "status_label",
        "stage_name",
        "progress_bar",
        "summary",
        "took",
        "trigger",
    )
    list_filter = ("status", "kind", "trigger", ("started_at", DayRangeFilter))
    list_filter_submit = True
    change_list_template = "wecom/syncrun_change_list.html"
    actions_list = ("sync_now",)
    fields = (
        "kind",
        "trigger",
        "status",
        "stage_name",
        "progress_bar",
        "counters_table",
        "warnings_list",
        "error",
        "started_at",
        "finished_at",
        "took",
    )
    readonly_fields = ("stage_name", "progress_bar", "counters_table", "warnings_list", "took")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        extra_context = {
            **(extra_context or {}),
            "sync_running": running_run(console_actor(request).tenant) is not None,
        }
        return super().changelist_view(request, extra_context)

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, run: SyncRun):
        return run.status, run.get_status_display()

    @display(description=_("stage"), ordering="stage")
    def stage_name(self, run: SyncRun) -> str:
        return str(STAGE_NAMES.get(run.stage, run.stage or "-"))

    @display(description=_("progress"), ordering="progress")
    def progress_bar(self, run: SyncRun) -> str:
        value = round(run.progress)
        # A rendered template is already safe HTML (unfold's own progress component).
        return render_to_string(
            "unfold/components/progress.html",
            {"value": value, "description": f"{value}%", "class": "min-w-32"},
        )

    @display(description=_("read from WeCom"))
    def summary(self, run: SyncRun) -> str:
        counters = run.counters or {}
        parts = [f"{counters.get(key, 0)} {name}" for key, name in COUNTER_NAMES[:3]]
        return " · ".join(parts)

    @display(description=_("duration"))
    def took(self, run: SyncRun) -> str:
        seconds = run.duration.total_seconds()
        minutes, seconds = divmod(round(seconds), 60)
        return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"

    @display(description=_("counters"))
    def counters_table(self, run: SyncRun) -> str:
        if not run.counters:
            return "-"
        rows = format_html_join(
            "", "<tr><td class='pr-4'>{}</td><td>{}</td></tr>", run.counters.items()
        )
        return format_html("<table>{}</table>", rows)

    @display(description=_("warnings"))
    def warnings_list(self, run: SyncRun) -> str:
        if not run.warnings:
            return "-"
        items = format_html_join("", "<li>{}</li>", ((warning,) for warning in run.warnings))
        return format_html("<ul class='list-disc pl-4'>{}</ul>", items)

    def has_sync_now_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Starting a sync creates a SyncRun: the same right as adding one."""
        return request.user.has_perm("wecom.add_syncrun")

    @action(
        description=_("Sync now"),
        icon="sync",
        permissions=["sync_now"],
        dialog={
            "title": _("Sync with WeCom now"),
            "description": _(
                "Reads staff, tags, customers and groups from WeCom in the background; "
                "this page shows its progress."
            ),
            "form_class": SyncNowForm,
            "form_submit_text": _("Start the sync"),
        },
    )
    def sync_now(self, request: HttpRequest, form: SyncNowForm) -> HttpResponse:
        actor = console_actor(request)
        try:
            request_sync(actor.tenant, full=bool(form.cleaned_data.get("full")), by=actor)
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, _("The WeCom sync is queued; its progress shows here."))
        url = reverse("admin:wecom_syncrun_changelist")
        if request.headers.get("HX-Request"):  # the dialog posts with htmx
            return HttpResponse(headers={"HX-Redirect": url})
        return redirect(url)


add_model_page("settings", SyncRun, icon="sync")
