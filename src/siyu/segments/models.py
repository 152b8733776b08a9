"""Segments (分群 / 分层): sets of customers defined by rules, and RFM layering.

A dynamic segment is its rule, evaluated live (one SQL query) with a cached count; a static
segment is a snapshot of members taken when it is (re)built. Only
``siyu.segments.services`` writes these tables.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from siyu.core.scoping import TenantScopedModel


class Segment(TenantScopedModel):
    """A named rule over customers (nested AND / OR groups of conditions, as JSON)."""

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic", _("dynamic")
        STATIC = "static", _("static")

    name = models.CharField(_("name"), max_length=100)
    description = models.CharField(_("description"), max_length=300, blank=True)
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices, default=Kind.DYNAMIC)
    rules = models.JSONField(_("rules"), default=dict)
    cached_count = models.PositiveIntegerField(_("customers"), null=True, blank=True)
    counted_at = models.DateTimeField(_("counted at"), null=True, blank=True)
    snapshot_at = models.DateTimeField(_("snapshot taken at"), null=True, blank=True)
    created_by = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="segments",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="segment_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class SegmentMember(TenantScopedModel):
    """A customer in a static segment's snapshot."""

    segment = models.ForeignKey(
        Segment, verbose_name=_("segment"), on_delete=models.CASCADE, related_name="members"
    )
    customer = models.ForeignKey(
        "customers.Customer",
        verbose_name=_("customer"),
        on_delete=models.CASCADE,
        related_name="segment_memberships",
    )
    added_at = models.DateTimeField(_("added at"), auto_now_add=True)

    data_scope_owner = "customer__owner"

    class Meta:
        verbose_name = _("segment member")
        verbose_name_plural = _("segment members")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "segment", "customer"], name="segmentmember_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.segment}: {self.customer_id}"


class SegmentSize(TenantScopedModel):
    """A segment's size on one day: its size over time."""

    segment = models.ForeignKey(
        Segment, verbose_name=_("segment"), on_delete=models.CASCADE, related_name="sizes"
    )
    day = models.DateField(_("day"))
    size = models.PositiveIntegerField(_("customers"))

    class Meta:
        verbose_name = _("segment size")
        verbose_name_plural = _("segment sizes")
        ordering = ["day"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "segment", "day"], name="segmentsize_unique")
        ]

    def __str__(self) -> str:
        return f"{self.segment} {self.day}: {self.size}"


class CustomerRFM(TenantScopedModel):
    """A customer's RFM layering: recency, frequency and monetary value over a window, each
    scored 1–5 by quintile within the tenant (5 = best), recomputed by a periodic task."""

    customer = models.ForeignKey(
        "customers.Customer",
        verbose_name=_("customer"),
        on_delete=models.CASCADE,
        related_name="rfm_scores",
    )
    recency_days = models.PositiveIntegerField(_("days since last purchase"), null=True, blank=True)
    frequency = models.PositiveIntegerField(_("purchases"), default=0)
    monetary_fen = models.BigIntegerField(_("spend (fen)"), default=0)
    r_score = models.PositiveSmallIntegerField(_("R"), default=1)
    f_score = models.PositiveSmallIntegerField(_("F"), default=1)
    m_score = models.PositiveSmallIntegerField(_("M"), default=1)
    layer = models.CharField(_("RFM layer"), max_length=24, blank=True, db_index=True)
    computed_at = models.DateTimeField(_("computed at"))

    data_scope_owner = "customer__owner"

    class Meta:
        verbose_name = _("RFM score")
        verbose_name_plural = _("RFM scores")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "customer"], name="customerrfm_unique")
        ]
        indexes = [
            models.Index(fields=["tenant", "r_score", "f_score", "m_score"], name="rfm_scores"),
            # rfm.layer conditions: an index-only "customer_id of this layer" subquery
            models.Index(fields=["tenant", "layer", "customer"], name="rfm_layer_customers"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.r_score}{self.f_score}{self.m_score}"


class RFMPolicy(TenantScopedModel):
    """A tenant's RFM settings: which events are purchases, where their amount is, and the
    window. Commerce records ``order.paid`` with ``payload["amount_fen"]``; a tenant whose
    purchases arrive as other events (an imported ``crm.purchase``, a mini-shop's own type)
    lists those types here."""

    window_days = models.PositiveIntegerField(
        _("window (days)"), default=365, help_text=_("Purchases within this many days count")
    )
    purchase_event_types = models.JSONField(
        _("purchase event types"),
        default=list,
        blank=True,
        help_text=_("Event types that are purchases; empty means order.paid"),
    )
    amount_key = models.CharField(
        _("amount key"),
        max_length=40,
        default="amount_fen",
        help_text=_("The key of the event payload holding the amount in fen"),
    )
    last_run_at = models.DateTimeField(_("last computed at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("RFM settings")
        verbose_name_plural = _("RFM settings")
        constraints = [models.UniqueConstraint(fields=["tenant"], name="rfmpolicy_one_per_tenant")]

    def __str__(self) -> str:
        return str(_("RFM settings"))
