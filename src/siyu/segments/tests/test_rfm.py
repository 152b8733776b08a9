"""RFM scoring on a small data set whose quintiles are known, the layers, the settings, and
RFM conditions in rules."""

from __future__ import annotations

import pytest

from siyu.core.errors import InvalidInput
from siyu.core.events import record_event
from siyu.segments import rfm, services
from siyu.segments.models import CustomerRFM
from siyu.segments.tests.support_segments import NOW, days_ago, merge, purchase
from siyu.tenancy.services import system_actor
from siyu.testing.factories import CustomerFactory


@pytest.fixture
def buyers(tenant):
    """Seven customers: five purchasers in the window, one only before it, one never."""
    c = {
        name: CustomerFactory(tenant=tenant, name=name)
        for name in ("c1", "c2", "c3", "c4", "c5", "c6", "c7")
    }
    for n, day in enumerate((1, 5, 10, 20, 30)):
        purchase(c["c1"], at=days_ago(day), amount_fen=10_000, n=n)
    for n, day in enumerate((10, 20, 30)):
        purchase(c["c2"], at=days_ago(day), amount_fen=10_000, n=n)
    purchase(c["c3"], at=days_ago(100), amount_fen=100_000)
    purchase(c["c4"], at=days_ago(200), amount_fen=500)
    for n, day in enumerate((400, 420)):
        purchase(c["c5"], at=days_ago(day), amount_fen=99_999, n=n)  # outside the 365 days
    for n in range(10):
        purchase(c["c7"], at=days_ago(0.05 + n), amount_fen=20_000, n=n)
    return c


def rows(tenant) -> dict[str, tuple]:
    return {
        row.customer.name: (
            row.recency_days,
            row.frequency,
            row.monetary_fen,
            row.r_score,
            row.f_score,
            row.m_score,
            row.layer,
        )
        for row in CustomerRFM.objects.for_tenant(tenant).select_related("customer")
    }


def test_scores_are_quintiles_within_the_tenants_purchasers(tenant, buyers):
    # when RFM is computed
    result = rfm.compute_rfm(tenant, now=NOW)
    # then each purchaser is ranked among the five; ties share a score; no purchase: 1-1-1
    assert result == {"customers": 7, "purchasers": 5, "removed": 0}
    assert rows(tenant) == {
        "c7": (0, 10, 200_000, 5, 5, 5, "important_value"),
        "c1": (1, 5, 50_000, 4, 4, 3, "general_value"),
        "c2": (10, 3, 30_000, 3, 3, 2, "general_winback"),
        "c3": (100, 1, 100_000, 2, 1, 4, "important_winback"),
        "c4": (200, 1, 500, 1, 1, 1, "general_winback"),
        "c5": (None, 0, 0, 1, 1, 1, "no_purchase"),
        "c6": (None, 0, 0, 1, 1, 1, "no_purchase"),
    }


def test_recomputing_updates_the_rows_in_place(tenant, buyers):
    rfm.compute_rfm(tenant, now=NOW)
    first_ids = set(CustomerRFM.objects.for_tenant(tenant).values_list("pk", flat=True))
    # given c6 buys a lot afterwards
    purchase(buyers["c6"], at=days_ago(0.01), amount_fen=1_000_000)
    # when computed again
    rfm.compute_rfm(tenant, now=NOW)
    # then the same rows changed (an upsert), and c6 is now the biggest spender
    assert set(CustomerRFM.objects.for_tenant(tenant).values_list("pk", flat=True)) == first_ids
    assert rows(tenant)["c6"] == (0, 1, 1_000_000, 5, 1, 5, "important_develop")


@pytest.mark.parametrize(
    ("flags", "layer"),
    [
        ((5, 5, 5), "important_value"),
        ((2, 4, 5), "important_retain"),
        ((4, 1, 4), "important_develop"),
        ((3, 3, 5), "important_winback"),
        ((5, 4, 3), "general_value"),
        ((1, 5, 2), "general_retain"),
        ((4, 2, 1), "general_develop"),
        ((3, 3, 3), "general_winback"),
    ],
)
def test_the_eight_classic_layers(flags, layer):
    assert rfm.layer_of(*flags) == layer


def test_a_tenant_may_count_other_event_types_as_purchases(tenant):
    # given purchases recorded as crm.purchase with the amount under "amount"
    buyer = CustomerFactory(tenant=tenant, name="imported")
    record_event(
        tenant,
        "crm.purchase",
        key="imported-1",
        customer_id=buyer.pk,
        payload={"amount": 8800},
        occurred_at=days_ago(3),
    )
    services.update_rfm_policy(
        system_actor(tenant), purchase_event_types=["crm.purchase"], amount_key="amount"
    )
    # when RFM is computed
    rfm.compute_rfm(tenant, now=NOW)
    # then they count
    assert rows(tenant)["imported"] == (3, 1, 8800, 1, 1, 1, "general_winback")


def test_purchases_of_a_merged_record_count_for_the_survivor(tenant):
    survivor = CustomerFactory(tenant=tenant, name="survivor")
    merged = CustomerFactory(tenant=tenant, name="merged")
    purchase(survivor, at=days_ago(2), amount_fen=100)
    purchase(merged, at=days_ago(1), amount_fen=900)
    rfm.compute_rfm(tenant, now=NOW)
    merge(merged, survivor)
    rfm.compute_rfm(tenant, now=NOW)
    assert rows(tenant) == {"survivor": (1, 2, 1000, 1, 1, 1, "general_winback")}


def test_rfm_conditions_in_rules(tenant, buyers):
    rfm.compute_rfm(tenant, now=NOW)

    def names(field, operator, value):
        rules = {
            "op": "and",
            "conditions": [{"field": field, "operator": operator, "value": value}],
        }
        return {c.name for c in services.matching_customers(tenant, rules, now=NOW)}

    assert names("rfm.layer", "eq", "important_value") == {"c7"}
    assert names("rfm.layer", "in", ["no_purchase"]) == {"c5", "c6"}
    assert names("rfm.r_score", "gte", 4) == {"c7", "c1"}
    assert names("rfm.f_score", "eq", 1) == {"c3", "c4", "c5", "c6"}
    assert names("rfm.m_score", "between", [2, 4]) == {"c1", "c2", "c3"}
    assert names("rfm.recency_days", "lt", 5) == {"c7", "c1"}
    assert names("rfm.monetary_fen", "gt", 60_000) == {"c3", "c7"}


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ({"window_days": 0}, "window_days"),
        ({"window_days": 4000}, "window_days"),
        ({"purchase_event_types": ["Order Paid"]}, "purchase_event_types"),
        ({"amount_key": "amount fen"}, "amount_key"),
        ({"amount_key": ""}, "amount_key"),
    ],
)
def test_rfm_settings_are_validated(tenant, values, bad):
    with pytest.raises(InvalidInput) as refused:
        services.update_rfm_policy(system_actor(tenant), **values)
    assert bad in refused.value.details


def test_the_periodic_task_computes_every_active_tenant(tenant, other_tenant, buyers):
    from siyu.segments.tasks import compute_rfm_scores

    CustomerFactory(tenant=other_tenant, name="elsewhere")
    assert compute_rfm_scores.call_local() == 2
    assert CustomerRFM.objects.for_tenant(tenant).count() == 7
    assert CustomerRFM.objects.for_tenant(other_tenant).count() == 1
