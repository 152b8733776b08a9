"""Prediction fields of the segment rule language: P(alive) and expected 90-day value."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from siyu.analytics.models import CustomerPrediction
from siyu.commerce.segment_fields import fen
from siyu.segments.fields import (
    NUMBER,
    SUBQUERY,
    Column,
    CompileContext,
    FieldSpec,
    compare,
    register_category,
    register_field,
    related_builder,
)

NUMBER_OPERATORS = ("lt", "gt", "lte", "gte", "between")


def _expected_value(ctx: CompileContext, operator: str, value: Any) -> Q:
    stored = [fen(v) for v in value] if isinstance(value, list) else fen(value)
    inner = compare(Column("expected_value_fen"), NUMBER)(ctx, operator, stored)
    rows = CustomerPrediction.objects.for_tenant(ctx.tenant_id).filter(inner)
    return Q(pk__in=rows.order_by().values("customer_id"))


def register_prediction_fields() -> None:
    register_category("prediction", _("Predicted value"))
    common = {"category": "prediction", "cost": SUBQUERY, "operators": NUMBER_OPERATORS}
    register_field(
        FieldSpec(
            "prediction.probability_alive",
            _("probability still buying"),
            NUMBER,
            related_builder(CustomerPrediction, "customer_id", "probability_alive"),
            bounds=(0, 1),
            help_text=_("0 to 1, from the buyer's purchase rhythm (BG/NBD); buyers only"),
            **common,
        )
    )
    register_field(
        FieldSpec(
            "prediction.expected_value",
            _("expected spend, next 90 days (yuan)"),
            NUMBER,
            _expected_value,
            bounds=(0, None),
            help_text=_("BG/NBD purchases × Gamma-Gamma spend; buyers only"),
            **common,
        )
    )


register_prediction_fields()
