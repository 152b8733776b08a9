"""The staff task inbox in the console (我的待办).

Lists the signed-in staff's open tasks, due soonest first (overdue ones marked), with a
"done" and a "dismiss" button per row and as bulk actions; a filter switches to the direct
reports' tasks (managers) or everything the staff may see. Tasks are created and closed
through ``siyu.engagement.services``; rows outside ``visible_tasks`` are a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from unfold.decorators import action, display

from siyu.core.console import TenantScopedAdmin, add_model_page, console_actor
from siyu.core.errors import ServiceError
from siyu.engagement import selectors, services
from siyu.engagement.models import StaffTask

STATUS_COLOURS = {
    StaffTask.Status.OPEN: "info",
    StaffTask.Status.DONE: "success",
    StaffTask.Status.DISMISSED: "default",
}


class WhoseFilter(admin.SimpleListFilter):
    """Mine by default; a manager switches to their reports' tasks."""

    title = _("whose")
    parameter_name = "whose"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("mine", _("mine")), ("reports", _("my reports'")), ("all", _("all I may see"))]

    def value(self) -> str:
        value = super().value()
        return value if value in selectors.WHOSE else "mine"

    def choices(self, changelist: Any):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset):
        actor = console_actor(request)
        whose = self.value()
        if whose == "mine":
            return queryset.filter(staff_id=actor.staff_id or 0)
        if whose == "reports":
            return queryset.filter(staff__direct_leader_id=actor.staff_id or 0)
        return queryset


class StatusFilter(admin.SimpleListFilter):
    """Open tasks by default: the inbox is what is left to do."""

    title = _("status")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [*StaffTask.Status.choices, ("any", _("any"))]

    def value(self) -> str:
        value = super().value()
        return value if value in (*StaffTask.Status.values, "any") else StaffTask.Status.OPEN

    def choices(self, changelist: Any):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset):
        value = self.value()
        return queryset if value == "any" else queryset.filter(status=value)


@admin.register(StaffTask)
class StaffTaskAdmin(TenantScopedAdmin):
    list_display = (
        "title",
        "kind",
        "customer_link",
        "due",
        "staff",
        "status_label",
        "buttons",
    )
    list_filter = (WhoseFilter, StatusFilter, "kind")
    search_fields = ("title", "detail")
    list_select_related = ("staff", "customer")
    ordering = (F("due_at").asc(nulls_last=True), "-id")
    actions = ("mark_done", "mark_dismissed")
    autocomplete_fields = ("customer",)
    fields = ("title", "kind", "detail", "customer", "staff", "due_at")

    def get_queryset(self, request: HttpRequest):
        tasks = selectors.visible_tasks(console_actor(request))
        ordering = self.get_ordering(request)
        return tasks.order_by(*ordering) if ordering else tasks

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        # A task is changed by closing it (done / dismiss), not by editing it.
        return self.fields if obj is not None else ()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("staff", console_actor(request).staff_id)
        return initial

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "staff":
            from siyu.tenancy.models import Staff

            actor = console_actor(request)
            kwargs["queryset"] = (
                Staff.objects.for_tenant(actor.tenant_id).filter(
                    pk__in=_assignable_ids(actor), status=Staff.Status.ACTIVE
                )
            ).order_by("name", "id")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_via_service(self, request: HttpRequest, obj: Any, form: Any, change: bool):
        if change:
            return obj
        data = form.cleaned_data
        task, _created = services.create_task(
            console_actor(request).tenant,
            data["staff"],
            title=data["title"],
            kind=data["kind"],
            detail=data.get("detail") or "",
            customer=data.get("customer"),
            due_at=data.get("due_at"),
            by=console_actor(request),
        )
        return task

    # -- columns ------------------------------------------------------------------------------
    @display(description=_("customer"), ordering="customer__name")
    def customer_link(self, task: StaffTask) -> str:
        if not task.customer_id:
            return "-"
        url = reverse("admin:customers_customer_change", args=[task.customer_id])
        return format_html('<a href="{}" class="text-primary-600">{}</a>', url, task.customer)

    @display(description=_("due"), ordering="due_at")
    def due(self, task: StaffTask) -> str:
        if task.due_at is None:
            return "-"
        shown = timezone.localtime(task.due_at).strftime("%Y-%m-%d %H:%M")
        if task.status == StaffTask.Status.OPEN and task.due_at < timezone.now():
            return format_html('<span class="text-red-600 font-semibold">{} ⚠</span>', shown)
        return shown

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, task: StaffTask):
        return task.status, task.get_status_display()

    @display(description="")
    def buttons(self, task: StaffTask) -> str:
        """Per-row done / dismiss: submit the list's form (it carries the CSRF token) to the
        task's own URL."""
        if task.status != StaffTask.Status.OPEN:
            return ""
        done = reverse("admin:engagement_stafftask_done", args=[task.pk])
        dismiss = reverse("admin:engagement_stafftask_dismiss", args=[task.pk])
        return format_html(
            '<span class="flex gap-2 task-buttons">'
            '<button type="submit" formaction="{}" formmethod="post" formnovalidate '
            'class="text-primary-600 cursor-pointer task-done">{}</button>'
            '<button type="submit" formaction="{}" formmethod="post" formnovalidate '
            'class="text-subtle cursor-pointer task-dismiss">{}</button></span>',
            done,
            _("Done"),
            dismiss,
            _("Dismiss"),
        )

    # -- closing tasks ----------------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:task_id>/done/", view(self.done_view), name="engagement_stafftask_done"),
            path(
                "<int:task_id>/dismiss/",
                view(self.dismiss_view),
                name="engagement_stafftask_dismiss",
            ),
            *super().get_urls(),
        ]

    def _close(self, request: HttpRequest, task_id: int, service, message) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        task = self.get_object(request, str(task_id))
        try:
            service(console_actor(request), task)
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, message % {"task": task.title})
        back = request.META.get("HTTP_REFERER", "")
        if not url_has_allowed_host_and_scheme(back, {request.get_host()}):
            back = reverse("admin:engagement_stafftask_changelist")
        return redirect(back)

    def done_view(self, request: HttpRequest, task_id: int) -> HttpResponse:
        return self._close(request, task_id, services.complete_task, _("Done: %(task)s"))

    def dismiss_view(self, request: HttpRequest, task_id: int) -> HttpResponse:
        return self._close(request, task_id, services.dismiss_task, _("Dismissed: %(task)s"))

    def _bulk(self, request: HttpRequest, queryset, service, done_message) -> None:
        actor = console_actor(request)
        self.apply_service(
            request,
            queryset,
            lambda task: service(actor, task),
            lambda count: done_message % {"count": count},
        )

    @action(description=_("Mark done"))
    def mark_done(self, request: HttpRequest, queryset) -> None:
        self._bulk(request, queryset, services.complete_task, _("%(count)d tasks done"))

    @action(description=_("Dismiss"))
    def mark_dismissed(self, request: HttpRequest, queryset) -> None:
        self._bulk(request, queryset, services.dismiss_task, _("%(count)d tasks dismissed"))


def _assignable_ids(actor: Any) -> set[int]:
    """Whom a staff may give a task: themselves, their direct reports, their data scope."""
    from siyu.tenancy.models import Staff

    ids = set(Staff.objects.for_actor(actor).values_list("pk", flat=True))
    if actor.staff_id:
        ids.add(actor.staff_id)
        ids.update(
            Staff.objects.for_tenant(actor.tenant_id)
            .filter(direct_leader_id=actor.staff_id)
            .values_list("pk", flat=True)
        )
    return ids


add_model_page("engagement", StaffTask, icon="task_alt", title=_("My tasks"))
