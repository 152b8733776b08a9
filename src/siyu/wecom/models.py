"""The WeCom callback inbox: every delivered callback, stored before it is processed.

Why an inbox: WeCom retries a callback that is not answered within 5 s, so the endpoint
only verifies, decrypts and stores (a few milliseconds), and processing runs on the task
queue. The inbox also makes processing idempotent (one row per distinct callback, whatever
WeCom's retries) and auditable (the decrypted envelope is kept).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from siyu.core.scoping import TenantScopedModel


class CallbackInbox(TenantScopedModel):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        PROCESSED = "processed", _("processed")
        IGNORED = "ignored", _("ignored")
        FAILED = "failed", _("failed")

    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)
    # SHA-256 of the decrypted XML: WeCom's retries and duplicates carry the same message.
    dedupe_key = models.CharField(max_length=64)
    event = models.CharField(_("event"), max_length=60, blank=True)
    change_type = models.CharField(_("change type"), max_length=60, blank=True)
    create_time = models.BigIntegerField(_("WeCom create time"), null=True, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    raw_xml = models.TextField(_("decrypted XML"))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    deliveries = models.PositiveIntegerField(_("deliveries"), default=1)
    attempts = models.PositiveIntegerField(_("processing attempts"), default=0)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # Which worker task took the row (``processing.process_many``), so that a task draining
    # the backlog and the task enqueued for the row do not both process it.
    claim = models.CharField(max_length=32, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("WeCom callback")
        verbose_name_plural = _("WeCom callbacks")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "dedupe_key"], name="inbox_unique_dedupe")
        ]
        indexes = [
            models.Index(fields=["status", "received_at"]),
            models.Index(fields=["tenant", "status", "claim", "id"], name="inbox_backlog"),
        ]

    def __str__(self) -> str:
        return f"{self.event}/{self.change_type} #{self.pk}"


class SyncRun(TenantScopedModel):
    """One full or incremental reconcile of a tenant's data with WeCom (``siyu.wecom.sync``).

    Updated while it runs (at most every half second) so that the console and the CLI can
    show its stage and progress; ``counters`` holds what it read and changed so far.
    """

    class Kind(models.TextChoices):
        FULL = "full", _("full")
        INCREMENTAL = "incremental", _("incremental")

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", _("schedule")
        CONSOLE = "console", _("console")
        CLI = "cli", _("command line")
        API = "api", _("API")

    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    trigger = models.CharField(
        _("started by"), max_length=10, choices=Trigger.choices, default=Trigger.SCHEDULE
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    stage = models.CharField(_("stage"), max_length=20, blank=True)
    progress = models.FloatField(_("progress (%)"), default=0)
    counters = models.JSONField(_("counters"), default=dict, blank=True)
    warnings = models.JSONField(_("warnings"), default=list, blank=True)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True, db_index=True)
    # Doubles as the heartbeat: a "running" row not updated for long was interrupted.
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("WeCom sync")
        verbose_name_plural = _("WeCom syncs")
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="syncrun_tenant_status")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def duration(self) -> timedelta:
        """How long it ran (so far, while running)."""
        return (self.finished_at or timezone.now()) - self.started_at


class InboxSchedule(TenantScopedModel):
    """Whether a task to process the tenant's inbox is queued and not yet started.

    Why: under a steady stream, callbacks arrive one at a time, and a task per callback
    cost more than the callback (one queue write, one claim, a batch of one). The writer
    queues a task only when none is waiting; the task, as it starts, clears the mark and
    then takes every waiting row of the tenant, in batches (``processing.process_waiting``).
    """

    task_queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("inbox schedule")
        verbose_name_plural = _("inbox schedules")
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="inbox_schedule_unique_tenant")
        ]

    def __str__(self) -> str:
        return f"inbox of tenant {self.tenant_id}: queued at {self.task_queued_at}"
