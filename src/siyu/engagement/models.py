"""Engagement: for now the staff task inbox (待办), which churn alerts, follow-up reminders
and hand-overs fill; materials, broadcasts and playbooks join it with their issue.

Only ``siyu.engagement.services`` writes these tables.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from siyu.core.scoping import TenantScopedModel


class StaffTask(TenantScopedModel):
    """Something a staff should do, usually about one customer: call back a customer who
    deleted them, the next contact of a follow-up, send prepared content, ..."""

    class Kind(models.TextChoices):
        CHURN = "churn", _("win back a lost customer")
        FOLLOW_UP = "follow_up", _("follow up")
        HANDOVER = "handover", _("hand-over")
        SEND_CONTENT = "send_content", _("send content")
        CUSTOM = "custom", _("other")

    class Status(models.TextChoices):
        OPEN = "open", _("to do")
        DONE = "done", _("done")
        DISMISSED = "dismissed", pgettext_lazy("task", "dismissed")

    staff = models.ForeignKey(
        "tenancy.Staff", verbose_name=_("assignee"), on_delete=models.CASCADE, related_name="tasks"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.CUSTOM)
    title = models.CharField(_("title"), max_length=200)
    detail = models.TextField(_("detail"), blank=True)
    customer = models.ForeignKey(
        "customers.Customer",
        verbose_name=_("customer"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="staff_tasks",
    )
    due_at = models.DateTimeField(_("due"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN
    )
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)
    # What created it ("churn_alert:12"), unique per tenant so that a retried handler or a
    # redelivered event never creates the same task twice.
    source_key = models.CharField(_("source"), max_length=120, blank=True)
    created_by = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    data_scope_owner = "staff"

    class Meta:
        verbose_name = _("staff task")
        verbose_name_plural = _("staff tasks")
        ordering = ["status", "due_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "staff", "source_key"],
                condition=~models.Q(source_key=""),
                name="stafftask_unique_source",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "staff", "status", "due_at"], name="stafftask_inbox")
        ]

    def __str__(self) -> str:
        return self.title
