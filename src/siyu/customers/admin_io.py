"""Console pages to import and export customers, and the customer list's export action.

Both pages start a background job and send the staff to the jobs page, where its progress
bar, result and download live (``siyu.core.admin_jobs``). The import form takes a CSV or
.xlsx file; the export form takes a selection (a segment or the customer list's filters),
the columns and the format, and is pre-filled from the customer list's filters when opened
from there (``?lifecycle_stage__exact=…&owner__id__exact=…&tag=…&channel=…&status__exact=…
&q=…``). The list's action "Export the selected customers" exports the selection (or, with
"select all", the whole filtered list) as Excel.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminFileFieldWidget,
    UnfoldAdminSelect2MultipleWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanSwitchWidget,
)

from siyu.core.admin_jobs import add_job_page, jobs_url
from siyu.core.console import console_actor
from siyu.core.errors import ServiceError
from siyu.customers import exports, imports, profiles
from siyu.customers.io_columns import COLUMNS_BY_KEY, CUSTOM_PREFIX
from siyu.customers.models import Customer, LifecycleStage, Tag
from siyu.tenancy.models import Staff

IMPORT_TEMPLATE = "customers/io_import.html"
EXPORT_TEMPLATE = "customers/io_export.html"


def _started(request: HttpRequest, job: Any) -> HttpResponse:
    messages.success(
        request,
        format_html(
            "{} <a class='underline' href='{}'>{}</a>",
            _("Started in the background: %(label)s.") % {"label": job.label},
            jobs_url(),
            _("Follow its progress"),
        ),
    )
    return redirect(jobs_url())


def _page(request: HttpRequest, template: str, title: Any, **context: Any) -> HttpResponse:
    from django.contrib.admin import site

    return TemplateResponse(
        request, template, {**site.each_context(request), "title": title, **context}
    )


# --- import ------------------------------------------------------------------------------------
class ImportForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=_("CSV (UTF-8 or GBK, as Excel saves it) or Excel .xlsx, at most 20 MB."),
        widget=UnfoldAdminFileFieldWidget,
    )
    dry_run = forms.BooleanField(
        label=_("Only check the file"),
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_("Report the problems without writing anything."),
    )
    create_missing = forms.BooleanField(
        label=_("Create customers Siyu does not know yet"),
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_(
            "Rows with an external_userid that is not in Siyu yet become customers (the next "
            "WeCom sync adds their friendships). Otherwise such rows are reported."
        ),
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > imports.MAX_FILE_BYTES:
            raise forms.ValidationError(
                _("The file is larger than %(limit)d MB: split it into several imports")
                % {"limit": imports.MAX_FILE_BYTES // (1024 * 1024)}
            )
        return upload


def import_view(request: HttpRequest) -> HttpResponse:
    actor = console_actor(request)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = imports.start_import(
                actor,
                filename=upload.name,
                content=upload.read(),
                dry_run=form.cleaned_data["dry_run"],
                create_missing=form.cleaned_data["create_missing"],
            )
        except ServiceError as error:
            form.add_error("file", error.message)
        else:
            return _started(request, job)
    return _page(
        request,
        IMPORT_TEMPLATE,
        _("Import customers"),
        form=form,
        columns=_import_columns(actor),
        max_rows=imports.MAX_ROWS,
    )


def _import_columns(actor: Any) -> list[tuple[str, str]]:
    built_in = [
        (key, str(column.label)) for key, column in COLUMNS_BY_KEY.items() if column.importable
    ]
    custom = [(f"{CUSTOM_PREFIX}{f.key}", f.label) for f in profiles.custom_fields(actor.tenant)]
    return built_in + custom


# --- export ------------------------------------------------------------------------------------
class ExportForm(forms.Form):
    format = forms.ChoiceField(
        label=_("Format"),
        choices=[("xlsx", _("Excel (.xlsx)")), ("csv", _("CSV (UTF-8, opens in Excel)"))],
        initial="xlsx",
        widget=UnfoldAdminSelectWidget,
    )
    segment = forms.ChoiceField(
        label=_("Segment"),
        required=False,
        widget=UnfoldAdminSelectWidget,
        help_text=_("Only this segment's customers (then narrowed by the filters below)."),
    )
    stage = forms.MultipleChoiceField(
        label=_("Lifecycle stage"),
        choices=LifecycleStage.choices,
        required=False,
        widget=UnfoldAdminSelect2MultipleWidget,
    )
    owner = forms.ModelChoiceField(
        label=_("Owner"),
        queryset=Staff.objects.none(),
        required=False,
        widget=UnfoldAdminSelectWidget,
    )
    tags = forms.ModelMultipleChoiceField(
        label=_("Tags (any of)"),
        queryset=Tag.objects.none(),
        required=False,
        widget=UnfoldAdminSelect2MultipleWidget,
    )
    channel = forms.CharField(
        label=_("Source channel"),
        required=False,
        max_length=30,
        widget=UnfoldAdminTextInputWidget,
    )
    status = forms.ChoiceField(
        label=_("Status"),
        choices=[("", _("any")), *Customer.Status.choices],
        required=False,
        widget=UnfoldAdminSelectWidget,
    )
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=exports.SEARCH_MAX,
        widget=UnfoldAdminTextInputWidget,
    )
    columns = forms.MultipleChoiceField(
        label=_("Columns"),
        required=False,
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text=_("None ticked: every column."),
    )

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = Staff.objects.for_actor(actor).order_by("name")
        self.fields["tags"].queryset = (
            Tag.objects.for_tenant(actor.tenant).filter(deleted=False).select_related("group")
        )
        self.fields["tags"].label_from_instance = lambda tag: f"{tag.group.name} / {tag.name}"
        self.fields["segment"].choices = [("", _("all my customers")), *_segments(actor)]
        self.fields["columns"].choices = exports.available_columns(actor)

    def selection(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "format": data["format"],
            "segment_id": int(data["segment"]) if data.get("segment") else None,
            "stage": list(data.get("stage") or []),
            "owner_id": data["owner"].pk if data.get("owner") else None,
            "tag_ids": [tag.pk for tag in data.get("tags") or []],
            "channel": data.get("channel") or "",
            "status": data.get("status") or "",
            "q": data.get("q") or "",
            "columns": list(data.get("columns") or []),
        }


def _segments(actor: Any) -> list[tuple[str, str]]:
    from siyu.segments.models import Segment

    return [
        (str(pk), name)
        for pk, name in Segment.objects.for_tenant(actor.tenant)
        .order_by("name")
        .values_list("pk", "name")
    ]


# The customer list's filter parameters, as the export form's initial values.
LIST_PARAMETERS = {
    "lifecycle_stage__exact": "stage",
    "owner__id__exact": "owner",
    "tag": "tags",
    "channel": "channel",
    "status__exact": "status",
    "q": "q",
    "segment": "segment",
}


def _initial_from_list(request: HttpRequest) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    for parameter, name in LIST_PARAMETERS.items():
        value = request.GET.get(parameter, "").strip()
        if value:
            initial[name] = [value] if name in ("stage", "tags") else value
    return initial


def export_view(request: HttpRequest) -> HttpResponse:
    actor = console_actor(request)
    form = ExportForm(request.POST or None, actor=actor, initial=_initial_from_list(request))
    if request.method == "POST" and form.is_valid():
        try:
            job = exports.start_export(actor, form.selection())
        except ServiceError as error:
            form.add_error(None, error.message)
        else:
            return _started(request, job)
    return _page(request, EXPORT_TEMPLATE, _("Export customers"), form=form)


# --- the customer list's action -----------------------------------------------------------------
@admin.action(description=_("Export the selected customers (Excel)"))
def export_selected_customers(modeladmin: Any, request: HttpRequest, queryset: Any):
    """Export the selection (or, with "select all", the filtered list) in the background."""
    actor = console_actor(request)
    ids = list(queryset.values_list("pk", flat=True)[: exports.MAX_IDS + 1])
    try:
        if len(ids) > exports.MAX_IDS:
            raise ServiceError(
                _("At most %(limit)d customers at once: use the export page's filters instead")
                % {"limit": exports.MAX_IDS}
            )
        job = exports.start_export(actor, {"customer_ids": ids, "format": "xlsx"})
    except ServiceError as error:
        modeladmin.message_user(request, error.message, messages.ERROR)
        return None
    return _started(request, job)


def _add_customer_action() -> None:
    """Append the action to the registered customer list (admin.py owns that page)."""
    customer_admin = admin.site._registry.get(Customer)
    if customer_admin is None:
        return
    actions = list(customer_admin.actions or ())
    if export_selected_customers not in actions:
        customer_admin.actions = [*actions, export_selected_customers]


def _may_import(actor: Any) -> bool:
    return all(
        actor.has_perm(permission)
        for permission in (imports.IMPORT_PERMISSION, imports.CHANGE_PERMISSION)
    )


def _may_export(actor: Any) -> bool:
    return actor.has_perm(exports.EXPORT_PERMISSION)


add_job_page(
    "customers-import",
    title=_("Import customers"),
    view=import_view,
    allowed=_may_import,
    section="customers",
    icon="upload_file",
)
add_job_page(
    "customers-export",
    title=_("Export customers"),
    view=export_view,
    allowed=_may_export,
    section="customers",
    icon="download",
)
_add_customer_action()
