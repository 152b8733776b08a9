"""Auto-tag rules: set-based runs that tag the customers who match and, with removal, untag
those who stopped matching; hourly and on demand; counts recorded on the rule."""

from __future__ import annotations

import pytest

from siyu.core.errors import InvalidInput, NotFound
from siyu.core.models import Event
from siyu.customers import autotag, services, tagging
from siyu.customers.models import AutoTagRule, Customer
from siyu.customers.tests.support_tags import carried, tag_named
from siyu.tenancy.services import system_actor
from siyu.testing.factories import CustomerFactory, StaffFactory, TenantFactory

IN_SHANGHAI = {"op": "and", "conditions": [{"field": "city", "operator": "eq", "value": "上海"}]}


@pytest.fixture
def actor(tenant):
    return system_actor(tenant, channel="console")


@pytest.fixture
def people(tenant, actor):
    """Four customers, two of them in Shanghai, and a local tag 地区/上海客户."""
    staff = StaffFactory(tenant=tenant)
    everyone = [CustomerFactory(tenant=tenant, staff=staff) for _ in range(4)]
    move(tenant, everyone[:2], "上海")
    move(tenant, everyone[2:], "北京")
    tagging.create_tag_group(actor, name="地区", tags=["上海客户"], local=True)
    return everyone


def move(tenant, customers, city: str) -> None:
    Customer.objects.for_tenant(tenant).filter(pk__in=[c.pk for c in customers]).update(city=city)


def rule_for(actor, tenant, **options) -> AutoTagRule:
    return autotag.create_rule(
        actor, name="上海", tag=tag_named(tenant, "上海客户"), rules=IN_SHANGHAI, **options
    )


def test_a_run_tags_the_customers_who_match_and_records_its_counts(tenant, actor, people):
    rule = rule_for(actor, tenant)
    # when
    run = autotag.run_rule(rule, actor=actor)
    # then
    assert (run.tagged, run.untagged, run.skipped) == (2, 0, False)
    assert [carried(tenant, c) for c in people] == [{"上海客户"}, {"上海客户"}, set(), set()]
    rule.refresh_from_db()
    assert (rule.last_tagged, rule.last_untagged) == (2, 0) and rule.last_run_at is not None
    events = Event.objects.for_tenant(tenant).filter(type="customer.tagged")
    assert {e.payload["via"] for e in events} == {"autotag"}
    assert {e.payload["rule_id"] for e in events} == {rule.pk}


def test_a_second_run_changes_nothing(tenant, actor, people):
    rule = rule_for(actor, tenant)
    autotag.run_rule(rule, actor=actor)
    before = Event.objects.for_tenant(tenant).count()
    run = autotag.run_rule(rule, actor=actor)
    assert (run.tagged, run.untagged) == (0, 0)
    assert Event.objects.for_tenant(tenant).count() == before


@pytest.mark.parametrize(("remove", "kept"), [(True, set()), (False, {"上海客户"})])
def test_customers_who_stop_matching_lose_the_tag_only_with_removal(
    tenant, actor, people, remove, kept
):
    rule = rule_for(actor, tenant, remove_when_unmatched=remove)
    autotag.run_rule(rule, actor=actor)
    # when a customer moves away and another moves in
    move(tenant, [people[0]], "北京")
    move(tenant, [people[3]], "上海")
    run = autotag.run_rule(rule, actor=actor)
    # then
    assert (run.tagged, run.untagged) == (1, 1 if remove else 0)
    assert carried(tenant, people[0]) == kept
    assert carried(tenant, people[3]) == {"上海客户"}


def test_removal_also_takes_off_a_tag_put_on_by_hand(tenant, actor, people):
    rule = rule_for(actor, tenant, remove_when_unmatched=True)
    tagging.tag_customer(actor, people[2], tag_named(tenant, "上海客户"))  # lives in Beijing
    run = autotag.run_rule(rule, actor=actor)
    assert (run.tagged, run.untagged) == (2, 1)
    assert carried(tenant, people[2]) == set()


def test_inactive_rules_and_deleted_tags_are_skipped(tenant, actor, people):
    rule = rule_for(actor, tenant, is_active=False)
    assert autotag.run_rule(rule, actor=actor).skipped is True
    autotag.update_rule(actor, rule, is_active=True)
    tagging.delete_tag(actor, tag_named(tenant, "上海客户"))
    assert autotag.run_rule(rule, actor=actor).skipped is True
    assert all(carried(tenant, c) == set() for c in people)


def test_the_hourly_sweep_runs_every_active_rule_of_every_tenant(tenant, actor, people):
    # given an active and an inactive rule here, and a rule of another tenant
    active = rule_for(actor, tenant)
    paused = autotag.create_rule(
        actor, name="停用", tag=tag_named(tenant, "上海客户"), rules=IN_SHANGHAI, is_active=False
    )
    other = TenantFactory()
    other_actor = system_actor(other)
    someone = CustomerFactory(tenant=other, staff=StaffFactory(tenant=other))
    move(other, [someone], "上海")
    tagging.create_tag_group(other_actor, name="地区", tags=["上海客户"], local=True)
    theirs = rule_for(other_actor, other)
    # when (tasks run in-process in tests)
    queued = autotag.run_auto_tag_rules.call_local()
    # then
    assert queued == 2
    for rule, ran in ((active, True), (paused, False), (theirs, True)):
        rule.refresh_from_db()
        assert (rule.last_run_at is not None) is ran
    assert carried(other, someone) == {"上海客户"}


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"op": "xor", "conditions": []},
        {"op": "and", "conditions": [{"field": "city", "operator": "gt", "value": 1}]},
        {"op": "and", "conditions": [{"field": "nonsense", "operator": "eq", "value": 1}]},
    ],
)
def test_invalid_rules_are_refused(tenant, actor, people, rules):
    with pytest.raises(InvalidInput):
        autotag.create_rule(actor, name="坏规则", tag=tag_named(tenant, "上海客户"), rules=rules)
    assert not AutoTagRule.objects.for_tenant(tenant).exists()


def test_rules_of_another_tenant_are_not_found(tenant, actor, people):
    other = TenantFactory()
    rule = rule_for(actor, tenant)
    with pytest.raises(NotFound):
        autotag.run_rule(rule.pk, actor=system_actor(other))
    with pytest.raises(NotFound):
        autotag.update_rule(system_actor(other), rule.pk, name="偷改")


def test_a_wecom_tag_rule_mirrors_to_each_friendship(tenant, actor, people):
    services.sync_corp_tags(
        tenant, [{"group_id": "g1", "group_name": "等级", "tag": [{"id": "t1", "name": "高"}]}]
    )
    rule = autotag.create_rule(actor, name="高", tag=tag_named(tenant, "高"), rules=IN_SHANGHAI)
    run = autotag.run_rule(rule, actor=actor)
    assert run.tagged == 2
    # one mark_tag task per friendship was queued (the tenant has no WeCom secret here)
    assert carried(tenant, people[0]) == {"高"}
