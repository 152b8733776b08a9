"""What the analytics domain stores in the database: per-customer predictions.

Metrics are computed on the fly from the columnar copy and stored nowhere; predictions are
fitted once a day (a model over every buyer of the tenant) and kept per customer, so that
segments, the customer page and the API can use them like any other attribute.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from siyu.core.scoping import TenantScopedModel


class CustomerPrediction(TenantScopedModel):
    """BG/NBD + Gamma-Gamma forecast of one buyer (siyu.analytics.predictions)."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="+", db_constraint=True
    )
    probability_alive = models.FloatField(_("probability still active"))
    expected_purchases = models.FloatField(_("expected purchases, next 90 days"))
    expected_value_fen = models.PositiveBigIntegerField(_("expected value, next 90 days (fen)"))
    repeat_purchases = models.PositiveIntegerField(_("repeat purchase days"))
    recency_days = models.PositiveIntegerField(_("days from first to last purchase"))
    age_days = models.PositiveIntegerField(_("days since the first purchase"))
    computed_at = models.DateTimeField(_("computed at"))

    data_scope_owner = "customer__owner"

    class Meta:
        verbose_name = _("customer prediction")
        verbose_name_plural = _("customer predictions")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "customer"], name="prediction_unique_customer"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "probability_alive"], name="prediction_alive"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: P(alive) {self.probability_alive:.2f}"
