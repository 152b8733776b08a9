"""Segments over orders: spend, order count, last order, tiers bought — one SQL statement,
customers who never bought counted as 0 where 0 satisfies the comparison."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from siyu.commerce import services
from siyu.commerce.segment_fields import fen, holds_for_zero
from siyu.commerce.services import BuyerIn, LineIn, OrderIn, RefundIn
from siyu.core.errors import InvalidInput
from siyu.segments.services import matching_customers, validate_rules
from siyu.testing.factories import CustomerFactory

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(datetime(2026, 11, 20, 12, 0))


def buy(tenant, customer, order_id: str, *, days_ago: int, fen_each: int, tier: str, **kw):
    paid_at = NOW - timedelta(days=days_ago)
    services.ingest_order(
        tenant,
        OrderIn(
            shop_order_id=order_id,
            status=kw.pop("status", "paid"),
            updated_at=paid_at + timedelta(minutes=5),
            paid_at=paid_at,
            buyer=BuyerIn(external_userid=customer.external_userid),
            lines=(LineIn(sku=f"{tier}-1", unit_price_fen=fen_each, price_tier=tier),),
            **kw,
        ),
    )


@pytest.fixture
def shoppers(tenant, other_tenant):
    """ann: a ¥9.90 trial 40 days ago and a ¥299 core order 3 days ago;
    bob: a ¥1 999 premium order 10 days ago, half refunded;
    cat: a ¥9.90 trial, refunded in full;  dan: never bought.
    And another tenant's big spender, who must never appear."""
    people = SimpleNamespace(
        **{name: CustomerFactory(tenant=tenant, name=name) for name in ("ann", "bob", "cat", "dan")}
    )
    buy(tenant, people.ann, "A1", days_ago=40, fen_each=990, tier="trial")
    buy(tenant, people.ann, "A2", days_ago=3, fen_each=29900, tier="core")
    half = RefundIn("RB", 99950, NOW - timedelta(days=9))
    buy(tenant, people.bob, "B1", days_ago=10, fen_each=199900, tier="premium", refunds=(half,))
    full = RefundIn("RC", 990, NOW - timedelta(days=1))
    buy(
        tenant,
        people.cat,
        "C1",
        days_ago=2,
        fen_each=990,
        tier="trial",
        status="refunded",
        refunds=(full,),
    )
    elsewhere = CustomerFactory(tenant=other_tenant, name="eve")
    buy(other_tenant, elsewhere, "E1", days_ago=1, fen_each=999900, tier="premium")
    people.tenant = tenant
    return people


def names(people, *conditions: dict[str, Any]) -> set[str]:
    rules = {"op": "and", "conditions": list(conditions)}
    return {c.name for c in matching_customers(people.tenant, rules, now=NOW)}


def cond(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        # spend, net of refunds, in yuan: ann 308.90, bob 999.50, cat 0, dan 0
        ("orders.spend", "gt", 300, {"ann", "bob"}),
        ("orders.spend", "gte", 308.9, {"ann", "bob"}),
        ("orders.spend", "lt", 100, {"cat", "dan"}),
        ("orders.spend", "lte", 308.90, {"ann", "cat", "dan"}),
        ("orders.spend", "eq", 0, {"cat", "dan"}),
        ("orders.spend", "ne", 0, {"ann", "bob"}),
        ("orders.spend", "between", [0, 400], {"ann", "cat", "dan"}),
        ("orders.spend", "between", [500, 1000], {"bob"}),
        # paid orders not refunded in full: ann 2, bob 1, cat 0, dan 0
        ("orders.count", "gte", 2, {"ann"}),
        ("orders.count", "eq", 1, {"bob"}),
        ("orders.count", "lte", 1, {"bob", "cat", "dan"}),
        ("orders.count", "eq", 0, {"cat", "dan"}),
        # the last paid order: ann 3 days ago, bob 10 days ago
        ("orders.last_paid_at", "in_last_days", 7, {"ann"}),
        ("orders.last_paid_at", "not_in_last_days", 7, {"bob"}),
        ("orders.last_paid_at", "is_empty", None, {"cat", "dan"}),
        ("orders.last_paid_at", "is_not_empty", None, {"ann", "bob"}),
        # tiers bought (cat's trial was refunded in full)
        ("orders.tiers", "has_any", ["trial"], {"ann"}),
        ("orders.tiers", "has_all", ["trial", "core"], {"ann"}),
        ("orders.tiers", "has_none", ["trial"], {"bob", "cat", "dan"}),
        ("orders.tiers", "is_empty", None, {"cat", "dan"}),
    ],
)
def test_each_order_field_and_operator(shoppers, field, operator, value, expected):
    assert names(shoppers, cond(field, operator, value)) == expected


def test_a_rule_over_orders_is_one_statement(shoppers):
    rules = {
        "op": "and",
        "conditions": [
            cond("orders.spend", "lt", 500),
            cond("orders.tiers", "has_any", ["trial", "core"]),
            cond("orders.last_paid_at", "in_last_days", 30),
        ],
    }
    with CaptureQueriesContext(connection) as queries:
        found = {c.name for c in matching_customers(shoppers.tenant, rules, now=NOW)}
    assert found == {"ann"}
    selects = [q["sql"] for q in queries.captured_queries if "commerce_order" in q["sql"]]
    assert len(selects) == 1


def test_unknown_tiers_and_negative_spend_are_refused(tenant):
    with pytest.raises(InvalidInput):
        validate_rules(
            tenant, {"op": "and", "conditions": [cond("orders.tiers", "has_any", ["x"])]}
        )
    with pytest.raises(InvalidInput):
        validate_rules(tenant, {"op": "and", "conditions": [cond("orders.spend", "gt", -1)]})


def test_yuan_become_fen_exactly():
    assert [fen(9.9), fen("0.1"), fen(0.3), fen(1999.99)] == [990, 10, 30, 199999]


@pytest.mark.parametrize(
    ("operator", "value", "holds"),
    [("lt", 1, True), ("gt", 0, False), ("gte", 0, True), ("between", [1, 2], False)],
)
def test_zero_is_judged_like_any_amount(operator, value, holds):
    assert holds_for_zero(operator, value) is holds
