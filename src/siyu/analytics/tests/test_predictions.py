"""Predicted value per buyer, fitted on the tenant's orders through the columnar copy."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from siyu.analytics.engine import DuckDBEngine
from siyu.analytics.models import CustomerPrediction
from siyu.analytics.predictions import refresh_predictions
from siyu.analytics.store import ColumnarStore
from siyu.analytics.sync import sync
from siyu.commerce import services as commerce
from siyu.segments.services import matching_customers
from siyu.testing.factories import CustomerFactory

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()


def buy(tenant, customer, n: int, days_ago: int, fen: int) -> None:
    paid_at = timezone.make_aware(datetime.combine(TODAY - timedelta(days=days_ago), time(12)))
    commerce.ingest_order(
        tenant,
        commerce.OrderIn(
            shop_order_id=f"{customer.pk}-{n}",
            status="paid",
            updated_at=paid_at,
            paid_at=paid_at,
            buyer=commerce.BuyerIn(external_userid=customer.external_userid),
            lines=(commerce.LineIn(sku="CORE", unit_price_fen=fen),),
        ),
    )


@pytest.fixture
def buyers(tenant, tmp_path):
    """12 steady buyers (every 20 days, the last 5 days ago), 12 lapsed ones (the same four
    purchases, the last 200 days ago) and 8 one-time buyers."""
    people = {"steady": [], "lapsed": [], "once": []}
    for n in range(12):
        steady = CustomerFactory(tenant=tenant, name=f"steady{n}")
        lapsed = CustomerFactory(tenant=tenant, name=f"lapsed{n}")
        for k in range(4):
            spend = 20000 + 1000 * n + 4000 * ((3 * k + n) % 5)  # varies, as spend does
            buy(tenant, steady, k, 5 + 20 * k + n % 3, spend)
            buy(tenant, lapsed, k, 200 + 20 * k + n % 3, spend)
        people["steady"].append(steady)
        people["lapsed"].append(lapsed)
    for n in range(8):
        once = CustomerFactory(tenant=tenant, name=f"once{n}")
        buy(tenant, once, 0, 30 + n, 9900)
        people["once"].append(once)
    store = ColumnarStore(tmp_path / "analytics")
    sync(store)
    return DuckDBEngine(store), people


def prediction(tenant, customer) -> CustomerPrediction:
    return CustomerPrediction.objects.for_tenant(tenant).get(customer=customer)


def test_every_buyer_gets_a_prediction(tenant, buyers):
    engine, people = buyers
    report = refresh_predictions(tenant.pk, engine=engine, as_of=TODAY)
    assert report.skipped == ""
    assert (report.buyers, report.repeat_buyers, report.stored) == (32, 24, 32)
    steady, lapsed = (
        prediction(tenant, people["steady"][0]),
        prediction(tenant, people["lapsed"][0]),
    )
    assert (steady.repeat_purchases, steady.recency_days) == (3, 60)
    assert steady.probability_alive > 0.5 > lapsed.probability_alive
    assert steady.expected_purchases > lapsed.expected_purchases
    assert steady.expected_value_fen > lapsed.expected_value_fen > 0
    once = prediction(tenant, people["once"][0])
    assert once.probability_alive == pytest.approx(1.0)  # BG/NBD: no repeat, no dropout yet


def test_predictions_replace_yesterdays(tenant, buyers):
    engine, _people = buyers
    refresh_predictions(tenant.pk, engine=engine, as_of=TODAY - timedelta(days=1))
    refresh_predictions(tenant.pk, engine=engine, as_of=TODAY)
    assert CustomerPrediction.objects.for_tenant(tenant).count() == 32


def test_too_few_buyers_fit_nothing(tenant, other_tenant, buyers):
    engine, _people = buyers
    lone = CustomerFactory(tenant=other_tenant)
    buy(other_tenant, lone, 0, 10, 100)
    sync(engine.store)
    report = refresh_predictions(other_tenant.pk, engine=engine, as_of=TODAY)
    assert report.stored == 0 and "10" in report.skipped
    assert not CustomerPrediction.objects.for_tenant(other_tenant).exists()


def test_segments_by_predicted_value(tenant, buyers):
    engine, people = buyers
    refresh_predictions(tenant.pk, engine=engine, as_of=TODAY)
    rules = {
        "op": "and",
        "conditions": [
            {"field": "prediction.probability_alive", "operator": "lt", "value": 0.5},
        ],
    }
    at_risk = {customer.name for customer in matching_customers(tenant, rules)}
    assert at_risk == {customer.name for customer in people["lapsed"]}
