"""Platform-wide tables: the event log, handler runs and the audit log.

``Event`` is written only by ``siyu.core.events.record_event``; ``AuditEntry`` only by
``siyu.core.audit.record_audit``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from siyu.core.scoping import TenantQuerySet, TenantScopedModel


class AppendOnlyError(RuntimeError):
    """Raised on an attempt to change or delete a row of an append-only log."""


class AppendOnlyQuerySet(TenantQuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")


class AppendOnlyModel(TenantScopedModel):
    """A tenant-scoped log whose rows are written once and never changed."""

    objects = models.Manager.from_queryset(AppendOnlyQuerySet)()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        # Integrity guard, not business logic: a log row is never rewritten.
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only")


class Event(AppendOnlyModel):
    """An append-only business fact: customer added, group joined, order paid, ...

    ``customer_id`` and ``group_id`` are plain indexed columns for now; the customers and
    community domains turn them into foreign keys (same column names) when those tables
    exist.
    """

    type = models.CharField(_("type"), max_length=80, db_index=True)
    occurred_at = models.DateTimeField(_("occurred at"), db_index=True)
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)
    staff = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("staff"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_constraint=False,
    )
    customer_id = models.BigIntegerField(_("customer"), null=True, blank=True, db_index=True)
    group_id = models.BigIntegerField(_("group"), null=True, blank=True, db_index=True)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    source = models.CharField(_("source"), max_length=40, default="system")
    idempotency_key = models.CharField(_("idempotency key"), max_length=200)

    objects = models.Manager.from_queryset(AppendOnlyQuerySet)()
    data_scope_owner = "staff"

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"], name="event_unique_idempotency_key"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "type", "occurred_at"]),
            # Segment rules over events ("did X at least N times in the last D days") read
            # only the index: 0.8 → 0.7 s on PostgreSQL and 1.8 → 0.8 s on SQLite for a
            # 5-condition rule over 10 M events (benchmarks/segments.py).
            models.Index(
                fields=["tenant", "type", "occurred_at", "customer_id"],
                name="event_type_time_customer",
            ),
        ]
        permissions = [("export_data", "Can export data (CSV, Excel, API bulk reads)")]

    def __str__(self) -> str:
        return f"{self.type} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class HandlerRun(TenantScopedModel):
    """One handler's processing of one event: makes delivery exactly-once in effect.

    A handler that finished is never run again for the same event, whether the event is
    redelivered by the sweep, a retried task or a second worker.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="handler_runs")
    handler = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "handler"], name="handler_run_unique")
        ]


class AuditEntry(AppendOnlyModel):
    """Who changed what, when, from where: the console's audit log."""

    at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    staff = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("staff"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    api_key = models.ForeignKey(
        "tenancy.ApiKey",
        verbose_name=_("API key"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    channel = models.CharField(_("channel"), max_length=20)  # console / api / cli / system
    action = models.CharField(_("action"), max_length=60)
    object_type = models.CharField(_("object type"), max_length=60, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)

    data_scope_owner = "staff"

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit log")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_repr}"


def _job_upload_path(job: BackgroundJob, filename: str) -> str:
    return f"jobs/{job.tenant_id}/{filename}"


class BackgroundJob(TenantScopedModel):
    """A long piece of work a person started (an import, an export, a bulk tagging, ...):
    its progress for the console's progress bar and the CLI, its result, and its files.

    The work itself runs in the task queue; ``siyu.core.jobs`` is the one writer.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    kind = models.CharField(_("kind"), max_length=60, db_index=True)
    label = models.CharField(_("description"), max_length=200)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    done = models.PositiveIntegerField(_("done"), default=0)
    total = models.PositiveIntegerField(_("total"), null=True, blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    result = models.JSONField(_("result"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    input_file = models.FileField(_("input file"), upload_to=_job_upload_path, blank=True)
    output_file = models.FileField(_("output file"), upload_to=_job_upload_path, blank=True)
    created_by = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    data_scope_owner = "created_by"

    class Meta:
        verbose_name = _("background job")
        verbose_name_plural = _("background jobs")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="backgroundjob_status")]

    def __str__(self) -> str:
        return self.label

    @property
    def percent(self) -> int | None:
        """Progress in percent, or None while the total is unknown."""
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.total:
            return None
        return min(100, self.done * 100 // self.total)
