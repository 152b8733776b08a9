"""The WeCom callback inbox: every delivered callback, stored before it is processed.

Why an inbox: WeCom retries a callback that is not answered within 5 s, so the endpoint
only verifies, decrypts and stores (a few milliseconds), and processing runs on the task
queue. The inbox also makes processing idempotent (one row per distinct callback, whatever
WeCom's retries) and auditable (the decrypted envelope is kept).
"""

from __future__ import annotations

from django.db import models
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

    class Meta:
        verbose_name = _("WeCom callback")
        verbose_name_plural = _("WeCom callbacks")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "dedupe_key"], name="inbox_unique_dedupe")
        ]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.event}/{self.change_type} #{self.pk}"
