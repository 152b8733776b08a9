"""Console pages for the platform's append-only logs: events (数据) and the audit log (设置).

Both are read-only: rows are written by ``record_event`` and ``record_audit`` inside the
services' transactions and never change. Also takes Django's own user and group pages out
of the console: they list every tenant's logins, and staff logins are managed from the
staff page.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from unfold.decorators import display

from siyu.core.console import (
    DayRangeFilter,
    ReadOnlyAdminMixin,
    TenantScopedAdmin,
    add_model_page,
)
from siyu.core.models import AuditEntry, Event

CHANGES_SUMMARY_LENGTH = 120

for model in (get_user_model(), Group):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


def _pretty_json(value: Any) -> str:
    return format_html(
        "<pre class='whitespace-pre-wrap text-xs'>{}</pre>",
        json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True),
    )


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ("type", "occurred_at", "staff", "source", "customer_id", "group_id")
    list_filter = ("type", "source", "staff", ("occurred_at", DayRangeFilter))
    list_filter_submit = True
    show_full_result_count = False  # tens of millions of events: one COUNT per page
    search_fields = ("type", "idempotency_key")
    list_select_related = ("staff",)
    fields = (
        "type",
        "occurred_at",
        "recorded_at",
        "staff",
        "customer_id",
        "group_id",
        "source",
        "idempotency_key",
        "payload_json",
    )
    readonly_fields = ("payload_json",)

    @display(description=_("payload"))
    def payload_json(self, event: Event) -> str:
        return _pretty_json(event.payload)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    """The audit log: who changed what, through which channel, from where, when."""

    list_display = (
        "at",
        "who",
        "channel",
        "action",
        "object_label",
        "changes_summary",
        "ip_address",
    )
    list_filter = ("channel", "action", "staff", ("at", DayRangeFilter))
    list_filter_submit = True
    show_full_result_count = False
    search_fields = ("action", "object_repr", "object_id")
    list_select_related = ("staff", "user", "api_key")
    fields = (
        "at",
        "who",
        "channel",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "changes_table",
        "ip_address",
    )
    readonly_fields = ("who", "changes_table")

    @display(description=_("who"))
    def who(self, entry: AuditEntry) -> str:
        if entry.staff is not None:
            return entry.staff.name
        if entry.user is not None:
            return entry.user.get_username()
        if entry.api_key is not None:
            return str(entry.api_key)
        return str(_("system"))

    @display(description=_("object"), ordering="object_repr")
    def object_label(self, entry: AuditEntry) -> str:
        if not entry.object_type:
            return "-"
        return f"{entry.object_repr} ({entry.object_type}#{entry.object_id})"

    @display(description=_("changes"))
    def changes_summary(self, entry: AuditEntry) -> str:
        parts = [f"{field}: {_short(change)}" for field, change in (entry.changes or {}).items()]
        summary = "; ".join(parts)
        if len(summary) > CHANGES_SUMMARY_LENGTH:
            summary = summary[: CHANGES_SUMMARY_LENGTH - 1] + "…"
        return summary or "-"

    @display(description=_("changes"))
    def changes_table(self, entry: AuditEntry) -> str:
        if not entry.changes:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td class='pr-4 font-semibold'>{}</td><td class='pr-4'>{}</td><td>{}</td></tr>",
            ((field, *_before_after(change)) for field, change in entry.changes.items()),
        )
        return format_html(
            "<table><thead><tr><th class='pr-4 text-left'>{}</th><th class='pr-4 text-left'>{}"
            "</th><th class='text-left'>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("field"),
            _("before"),
            _("after"),
            rows,
        )


def _before_after(change: Any) -> tuple[str, str]:
    if isinstance(change, list) and len(change) == 2:
        return _plain(change[0]), _plain(change[1])
    return "", _plain(change)


def _short(change: Any) -> str:
    before, after = _before_after(change)
    return f"{before} → {after}" if before else after


def _plain(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


add_model_page("data", Event, icon="bolt")
add_model_page("settings", AuditEntry, icon="history")

from siyu.core import admin_jobs  # noqa: E402,F401  (background jobs: progress, files, cancel)
