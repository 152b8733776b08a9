"""Order fields of the segment rule language: spend, order count, last order, tiers bought.

Each compiles to a semi-join over the orders grouped by customer (``customer_id IN (SELECT
customer_id ... GROUP BY customer_id HAVING ...)``), so a rule stays one SQL statement. A
customer who never bought has spend 0 and 0 orders: a comparison that 0 satisfies ("spent
less than ¥100", "at most 1 order") includes them, written as the complement of the
customers with orders that fail it (``NOT IN``), still one semi-join.

Which orders count: money that changed hands (paid, partly or fully refunded) for spend, net
of refunds; paid orders not refunded in full for the order count, the last order and the
tiers bought (a trial bought and fully refunded is no trial bought).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Count, F, Max, Q, Sum
from django.utils.translation import gettext_lazy as _

from siyu.commerce.models import Order, OrderLine, PriceTier
from siyu.segments.fields import (
    AGGREGATE,
    DATETIME,
    MULTI_CHOICE,
    NUMBER,
    Builder,
    Column,
    CompileContext,
    FieldSpec,
    compare,
    membership_builder,
    register_category,
    register_field,
)

MONEY_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED, Order.Status.REFUNDED)
PURCHASE_STATUSES = (Order.Status.PAID, Order.Status.PARTIALLY_REFUNDED)
NUMBER_OPERATORS = ("eq", "ne", "lt", "gt", "lte", "gte", "between")


def _orders(statuses: tuple[str, ...]) -> Any:
    def rows(ctx: CompileContext) -> Any:
        return Order.objects.for_tenant(ctx.tenant_id).filter(
            status__in=statuses, customer__isnull=False
        )

    return rows


def fen(yuan: Any) -> int:
    """An amount typed in yuan (up to 2 decimals) as integer fen, exactly."""
    return int((Decimal(str(yuan)) * 100).to_integral_value(rounding=ROUND_HALF_UP))


def holds_for_zero(operator: str, value: Any) -> bool:
    """Whether a customer with nothing (0) satisfies the comparison."""
    if operator == "between":
        return value[0] <= 0 <= value[1]
    return {
        "eq": lambda: value == 0,
        "ne": lambda: value != 0,
        "lt": lambda: value > 0,
        "lte": lambda: value >= 0,
        "gt": lambda: value < 0,
        "gte": lambda: value <= 0,
    }[operator]()


def per_customer_builder(rows: Any, aggregate: Any, kind: str, *, to_stored: Any = None) -> Builder:
    """Compare an aggregate of the customer's orders (see the module docstring)."""
    inner = compare(Column("_value", nullable=True), kind)

    def build(ctx: CompileContext, operator: str, value: Any) -> Q:
        buyers = rows(ctx).order_by()
        if operator == "is_empty":
            return ~Q(pk__in=buyers.values("customer_id"))
        if operator == "is_not_empty":
            return Q(pk__in=buyers.values("customer_id"))
        if to_stored is not None:
            value = [to_stored(v) for v in value] if isinstance(value, list) else to_stored(value)
        grouped = buyers.values("customer_id").annotate(_value=aggregate)
        matching = inner(ctx, operator, value)
        if kind == NUMBER and holds_for_zero(operator, value):
            failing = grouped.exclude(matching).values("customer_id")
            return ~Q(pk__in=failing)
        return Q(pk__in=grouped.filter(matching).values("customer_id"))

    return build


def register_order_fields() -> None:
    register_category("commerce", _("Orders"))
    common = {"category": "commerce", "cost": AGGREGATE}
    register_field(
        FieldSpec(
            "orders.spend",
            _("spend (yuan)"),
            NUMBER,
            per_customer_builder(
                _orders(MONEY_STATUSES),
                Sum(F("paid_fen") - F("refunded_fen")),
                NUMBER,
                to_stored=fen,
            ),
            operators=NUMBER_OPERATORS,
            bounds=(0, None),
            help_text=_("Paid minus refunded, all orders, in yuan"),
            **common,
        )
    )
    register_field(
        FieldSpec(
            "orders.count",
            _("orders"),
            NUMBER,
            per_customer_builder(_orders(PURCHASE_STATUSES), Count("id"), NUMBER),
            operators=NUMBER_OPERATORS,
            bounds=(0, None),
            integer=True,
            help_text=_("Paid orders not refunded in full"),
            **common,
        )
    )
    register_field(
        FieldSpec(
            "orders.last_paid_at",
            _("last order"),
            DATETIME,
            per_customer_builder(_orders(PURCHASE_STATUSES), Max("paid_at"), DATETIME),
            help_text=_("When the latest paid order was paid; empty: never bought"),
            **common,
        )
    )
    register_field(
        FieldSpec(
            "orders.tiers",
            _("price tiers bought"),
            MULTI_CHOICE,
            membership_builder(_bought_lines, "order__customer_id", "price_tier"),
            choices=lambda ctx: list(PriceTier.choices),
            help_text=_("Tiers of the products in paid orders not refunded in full"),
            **common,
        )
    )


def _bought_lines(ctx: CompileContext) -> Any:
    return OrderLine.objects.for_tenant(ctx.tenant_id).filter(
        order__status__in=PURCHASE_STATUSES, order__customer__isnull=False
    )


register_order_fields()
