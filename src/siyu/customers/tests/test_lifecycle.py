"""Lifecycle stages: each rule at chosen dates, bulk and one-customer recompute, handlers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.core.errors import Forbidden, InvalidInput
from siyu.core.events import record_event
from siyu.core.models import Event
from siyu.customers import lifecycle, services
from siyu.customers.models import Customer, LifecyclePolicy
from siyu.tenancy.services import system_actor
from siyu.testing.factories import CustomerFactory

NOW = timezone.now().replace(microsecond=0)
DAY = timedelta(days=1)


@pytest.fixture
def make(tenant, sales_staff):
    """``make(added_days_ago, interacted_days_ago=None, lost=False)``: a customer as of NOW."""

    def build(added: float | None, interacted: float | None = None, *, lost: bool = False):
        if added is None:  # never added (e.g. imported): only created
            customer = CustomerFactory(tenant=tenant)
        else:
            customer = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=NOW - added * DAY)
        rows = Customer.objects.for_tenant(tenant).filter(pk=customer.pk)
        if interacted is not None:
            rows.update(last_interaction_at=NOW - interacted * DAY)
        if lost:
            services.remove_follow(
                tenant, customer=customer, staff=sales_staff, by="customer", at=NOW - DAY / 2
            )
        return rows.get()

    return build


STAGE_CASES = [
    # (added days ago, last interaction days ago, lost, expected stage)
    pytest.param(2, None, False, "new", id="added-2-days-ago"),
    pytest.param(6.9, None, False, "new", id="still-new-on-day-7"),
    pytest.param(10, None, False, "active", id="past-new-not-yet-silent"),
    pytest.param(10, 1, False, "active", id="interacted-yesterday"),
    pytest.param(13.9, None, False, "active", id="day-14-not-yet-silent"),
    pytest.param(14.1, None, False, "silent", id="silent-after-14-days"),
    pytest.param(60, 20, False, "silent", id="silent-20-days-since-interaction"),
    pytest.param(40, None, False, "at_risk", id="at-risk-after-30-days"),
    pytest.param(200, 45, False, "at_risk", id="at-risk-45-days-since-interaction"),
    pytest.param(100, None, False, "churned", id="churned-after-90-days"),
    pytest.param(300, 91, False, "churned", id="churned-91-days-since-interaction"),
    pytest.param(300, 3, False, "active", id="old-but-interacted"),
    pytest.param(3, 1, True, "churned", id="lost-is-churned-even-if-new"),
    pytest.param(None, None, False, "new", id="never-added-counts-from-creation"),
]


@pytest.mark.parametrize(("added", "interacted", "lost", "expected"), STAGE_CASES)
def test_each_rule_gives_its_stage_in_bulk(added, interacted, lost, expected, tenant, make):
    # given
    customer = make(added, interacted, lost=lost)
    # when
    moved = lifecycle.recompute_stages(tenant, now=NOW)
    # then
    row = Customer.objects.for_tenant(tenant).get(pk=customer.pk)
    assert row.lifecycle_stage == expected
    assert sum(moved.values()) == (0 if expected == "new" else 1)


@pytest.mark.parametrize(("added", "interacted", "lost", "expected"), STAGE_CASES)
def test_one_customer_gets_the_same_stage_as_in_bulk(
    added, interacted, lost, expected, tenant, make
):
    customer = make(added, interacted, lost=lost)
    assert lifecycle.stage_for(customer, lifecycle.policy_for(tenant), NOW) == expected
    lifecycle.recompute_customer(tenant, customer.pk, now=NOW)
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).lifecycle_stage == expected


def test_the_stages_split_customers_without_overlap(tenant, make):
    for case in STAGE_CASES:
        make(*case.values[:2], lost=case.values[2])
    policy = lifecycle.policy_for(tenant)
    customers = Customer.objects.for_tenant(tenant)
    counts = [
        customers.filter(condition).count()
        for condition in lifecycle.stage_conditions(policy, NOW).values()
    ]
    assert sum(counts) == customers.count() == len(STAGE_CASES)


def test_a_stage_change_is_recorded_once_per_change(tenant, make, sales_staff):
    # given
    customer = make(40)
    # when: the daily task runs twice
    lifecycle.recompute_stages(tenant, now=NOW)
    lifecycle.recompute_stages(tenant, now=NOW + timedelta(hours=1))
    # then
    (event,) = Event.objects.for_tenant(tenant).filter(type=lifecycle.STAGE_CHANGED)
    assert (event.customer_id, event.payload, event.staff) == (
        customer.pk,
        {"from": "new", "to": "at_risk"},
        sales_staff,
    )
    row = Customer.objects.for_tenant(tenant).get(pk=customer.pk)
    assert row.lifecycle_changed_at == NOW


def test_the_bulk_recompute_works_in_chunks(tenant, make, monkeypatch):
    monkeypatch.setattr(lifecycle, "CHUNK", 2)
    made = [make(40) for _ in range(5)]
    moved = lifecycle.recompute_stages(tenant, now=NOW)
    assert moved["at_risk"] == 5
    stages = set(
        Customer.objects.for_tenant(tenant)
        .filter(pk__in=[c.pk for c in made])
        .values_list("lifecycle_stage", flat=True)
    )
    assert stages == {"at_risk"}


def test_merged_away_customers_keep_their_stage(tenant, make):
    survivor, merged = make(40), make(40)
    Customer.objects.for_tenant(tenant).filter(pk=merged.pk).update(merged_into=survivor)
    lifecycle.recompute_stages(tenant, now=NOW)
    assert Customer.objects.for_tenant(tenant).get(pk=merged.pk).lifecycle_stage == "new"


def test_the_policy_is_created_with_the_defaults_on_first_use(tenant):
    assert not LifecyclePolicy.objects.for_tenant(tenant).exists()
    policy = lifecycle.policy_for(tenant)
    assert (policy.new_days, policy.silent_after_days, policy.at_risk_after_days) == (7, 14, 30)
    assert policy.churned_after_days == 90
    assert lifecycle.policy_for(tenant) == policy


def test_a_tenants_own_rules_apply(tenant, make):
    customer = make(10)
    lifecycle.update_policy(system_actor(tenant), new_days=3, silent_after_days=5)
    lifecycle.recompute_stages(tenant, now=NOW)
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).lifecycle_stage == "silent"


@pytest.mark.parametrize(
    "values",
    [
        {"silent_after_days": 40},  # after at risk
        {"churned_after_days": 20},  # before at risk
        {"silent_after_days": 0, "at_risk_after_days": 1},
        {"new_days": -1},
        {"new_days": "a week"},
        {"interaction_types": ["not a type"]},
        {"grace_days": 3},
    ],
)
def test_inconsistent_rules_are_refused(values, tenant):
    with pytest.raises(InvalidInput):
        lifecycle.update_policy(system_actor(tenant), **values)


def test_changing_the_rules_needs_the_permission(tenant, actor_of, sales_staff):
    with pytest.raises(Forbidden):
        lifecycle.update_policy(actor_of(sales_staff), new_days=3)


# --- interactions ---------------------------------------------------------------------------------
def test_an_interaction_event_wakes_a_silent_customer_up(
    tenant, make, django_capture_on_commit_callbacks
):
    # given: silent for 20 days
    customer = make(60, 20)
    lifecycle.recompute_stages(tenant)
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).lifecycle_stage == "silent"
    paid_at = timezone.now() - timedelta(minutes=5)
    # when: they pay an order
    with django_capture_on_commit_callbacks(execute=True):
        record_event(tenant, "order.paid", customer_id=customer.pk, occurred_at=paid_at)
    # then
    row = Customer.objects.for_tenant(tenant).get(pk=customer.pk)
    assert (row.last_interaction_at, row.lifecycle_stage) == (paid_at, "active")
    change = Event.objects.for_tenant(tenant).filter(type=lifecycle.STAGE_CHANGED).first()
    assert change.payload == {"from": "silent", "to": "active"}


def test_an_older_interaction_never_moves_the_last_one_back(
    tenant, make, django_capture_on_commit_callbacks
):
    customer = make(60, 1)
    with django_capture_on_commit_callbacks(execute=True):
        record_event(tenant, "order.paid", customer_id=customer.pk, occurred_at=NOW - 10 * DAY)
    row = Customer.objects.for_tenant(tenant).get(pk=customer.pk)
    assert row.last_interaction_at == NOW - DAY


def test_event_types_outside_the_tenants_list_are_no_interaction(
    tenant, make, django_capture_on_commit_callbacks
):
    customer = make(60)
    lifecycle.update_policy(system_actor(tenant), interaction_types="material.opened")
    with django_capture_on_commit_callbacks(execute=True):
        record_event(tenant, "order.paid", customer_id=customer.pk)
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).last_interaction_at is None


def test_the_daily_catch_up_counts_configured_types_no_handler_listens_to(tenant, make):
    # given: a tenant counts quiz answers; an answer was recorded (no handler ran for it)
    customer = make(60)
    lifecycle.update_policy(system_actor(tenant), interaction_types=["quiz.answered"])
    answered = timezone.now() - timedelta(hours=3)
    record_event(tenant, "quiz.answered", customer_id=customer.pk, occurred_at=answered)
    record_event(tenant, "order.paid", customer_id=customer.pk)  # not in the tenant's list
    # when
    moved = lifecycle.recompute_tenant_stages(tenant.pk)
    # then
    row = Customer.objects.for_tenant(tenant).get(pk=customer.pk)
    assert (row.last_interaction_at, row.lifecycle_stage) == (answered, "active")
    assert moved["active"] == 1


def test_losing_the_last_friendship_churns_at_once(
    tenant, make, sales_staff, django_capture_on_commit_callbacks
):
    customer = make(3)
    with django_capture_on_commit_callbacks(execute=True):
        services.remove_follow(
            tenant, customer=customer, staff=sales_staff, by="customer", at=timezone.now()
        )
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).lifecycle_stage == "churned"


def test_the_periodic_task_recomputes_every_active_tenant(tenant, other_tenant, make):
    customer = make(40)
    result = lifecycle.recompute_lifecycle_stages.call_local()
    assert result[tenant.pk]["at_risk"] == 1 and other_tenant.pk in result
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).lifecycle_stage == "at_risk"


def test_a_syncs_back_filled_interactions_wait_for_the_daily_catch_up(
    tenant, make, django_capture_on_commit_callbacks
):
    # given: the WeCom sync back-fills a group join of an old customer
    customer = make(60)
    joined = timezone.now() - timedelta(days=2, hours=-1)
    with django_capture_on_commit_callbacks(execute=True):
        record_event(
            tenant,
            "group.member_joined",
            customer_id=customer.pk,
            occurred_at=joined,
            source="sync",
        )
    # then: nothing per event ...
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).last_interaction_at is None
    # ... the daily task catches it up in one statement
    lifecycle.recompute_tenant_stages(tenant.pk)
    row = Customer.objects.for_tenant(tenant).get(pk=customer.pk)
    assert (row.last_interaction_at, row.lifecycle_stage) == (joined, "active")
