"""Test data for the segments tests: a small population whose every attribute is known.

Customers, friendships and groups are built through the domains' services (the factories).
Profile columns, custom values, customer tags and merges are *set directly* here: they are
written in production by other domains' services (profiles, tagging, merge), and a segment
test needs exact values in those columns, not those services' validation and side effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from siyu.core.events import record_event
from siyu.customers.models import (
    Customer,
    CustomerMerge,
    CustomerTag,
    CustomField,
    Tag,
    TagGroup,
)
from siyu.testing.factories import CustomerFactory, GroupFactory, StaffFactory

# 2026-11-23 10:00 in Shanghai: "today" is Monday 23 November 2026 for every relative rule.
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 23)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def set_profile(customer: Customer, **values: Any) -> Customer:
    """Write profile columns as the profile services would have stored them."""
    Customer.objects.for_tenant(customer.tenant_id).filter(pk=customer.pk).update(**values)
    customer.refresh_from_db()
    return customer


def merge(duplicate: Customer, survivor: Customer) -> None:
    """Fold ``duplicate`` into ``survivor`` as the merge service records it (the customer
    pointer and the merge record); its other rows stay where the test put them."""
    set_profile(duplicate, merged_into=survivor)
    CustomerMerge.objects.for_tenant(survivor.tenant_id).create(
        tenant_id=survivor.tenant_id,
        survivor=survivor,
        merged_customer_id=duplicate.pk,
        merged_external_userid=duplicate.external_userid,
        reason=CustomerMerge.Reason.MANUAL,
    )


def make_tag(tenant: Any, name: str, group: str = "等级") -> Tag:
    tag_group, _created = TagGroup.objects.for_tenant(tenant).get_or_create(
        tenant=tenant, name=group, wecom_group_id=f"g-{group}"
    )
    return Tag.objects.for_tenant(tenant).create(
        tenant=tenant, group=tag_group, name=name, wecom_tag_id=f"t-{name}"
    )


def put_tags(customer: Customer, *tags: Tag) -> None:
    CustomerTag.objects.for_tenant(customer.tenant_id).bulk_create(
        CustomerTag(tenant_id=customer.tenant_id, customer=customer, tag=tag) for tag in tags
    )


def make_custom_field(tenant: Any, key: str, type: str, choices: list[str] = ()) -> CustomField:
    return CustomField.objects.for_tenant(tenant).create(
        tenant=tenant, key=key, label=key.title(), type=type, choices=list(choices)
    )


def purchase(customer: Customer | int, *, at: datetime, amount_fen: int = 1000, n: int = 0) -> None:
    customer_id = getattr(customer, "pk", customer)
    tenant_id = getattr(customer, "tenant_id", None)
    record_event(
        tenant_id,
        "order.paid",
        key=f"test-order:{customer_id}:{at.isoformat()}:{n}",
        customer_id=customer_id,
        payload={"amount_fen": amount_fen},
        occurred_at=at,
    )


def happened(customer: Customer, event_type: str, *, at: datetime, n: int = 0) -> None:
    record_event(
        customer.tenant_id,
        event_type,
        key=f"test:{event_type}:{customer.pk}:{at.isoformat()}:{n}",
        customer_id=customer.pk,
        occurred_at=at,
    )


@dataclass
class Population:
    """Four customers with distinct attributes (and one merged away), two staff, tags,
    groups, custom fields and purchases; see ``build_population`` for every value."""

    tenant: Any
    s1: Any
    s2: Any
    ann: Customer
    bob: Customer
    cat: Customer
    dan: Customer
    eve: Customer  # merged into ann
    vip: Tag
    new: Tag
    old: Tag
    g1: Any
    g2: Any

    def ids(self, *names: str) -> set[int]:
        return {getattr(self, name).pk for name in names}

    def names(self, customers: Any) -> set[str]:
        by_id = {getattr(self, n).pk: n for n in ("ann", "bob", "cat", "dan", "eve")}
        return {by_id.get(c.pk, str(c)) for c in customers}


def build_population(tenant: Any) -> Population:
    s1 = StaffFactory(tenant=tenant, wecom_userid="seg_s1", name="Sales One", login=True)
    s2 = StaffFactory(tenant=tenant, wecom_userid="seg_s2", name="Sales Two", login=True)
    ann = CustomerFactory(
        tenant=tenant, name="Ann", followed_by=[s1, s2], added_at=days_ago(10), state="ch_wx_1"
    )
    bob = CustomerFactory(
        tenant=tenant, name="Bob", staff=s2, added_at=days_ago(100), state="ch_dy_2"
    )
    cat = CustomerFactory(tenant=tenant, name="Cat", staff=s1, added_at=days_ago(1))
    dan = CustomerFactory(tenant=tenant, name="Dan")  # no friendship: no owner
    eve = CustomerFactory(tenant=tenant, name="Eve", staff=s1, added_at=days_ago(3))
    set_profile(
        ann,
        city="上海",
        province="上海",
        gender=Customer.Gender.FEMALE,
        age_band="25-34",
        birthday=date(1990, 11, 25),
        interests=["yoga", "coffee"],
        phone_hash="hash-ann",
        source_state="ch_wx_1",
        lifecycle_stage="active",
        last_interaction_at=days_ago(2),
        custom={
            "vip_level": 3,
            "skin": "dry",
            "nickname": "小安",
            "joined": "2026-10-01",
            "channels": ["tmall", "jd"],
        },
    )
    set_profile(
        bob,
        city="北京",
        province="北京",
        gender=Customer.Gender.MALE,
        age_band="35-44",
        birthday=date(1985, 2, 28),
        interests=["coffee"],
        source_state="ch_dy_2",
        lifecycle_stage="silent",
        last_interaction_at=days_ago(40),
        custom={"vip_level": 7.5, "skin": "oily", "joined": "2025-01-15", "channels": ["jd"]},
    )
    set_profile(cat, lifecycle_stage="new", source_state="")
    set_profile(
        dan,
        city="上海市",
        gender=Customer.Gender.MALE,
        birthday=date(2000, 12, 5),
        interests=["running"],
        source_state="ch_wx_9",
        lifecycle_stage="at_risk",
        first_added_at=days_ago(400),
        last_interaction_at=days_ago(200),
        custom={"vip_level": "5", "skin": "dry"},
    )
    set_profile(eve, city="上海")
    merge(eve, ann)
    vip, new, old = make_tag(tenant, "VIP"), make_tag(tenant, "新客"), make_tag(tenant, "老客")
    put_tags(ann, vip, new)
    put_tags(bob, vip)
    put_tags(dan, old)
    put_tags(eve, old)
    g1 = GroupFactory(tenant=tenant, owner=s1, name="G1", members=[ann, bob])
    g2 = GroupFactory(tenant=tenant, owner=s2, name="G2", members=[ann, dan, bob])
    from siyu.community import services as community

    community.remove_group_members(tenant, g2.chat_id, [bob.external_userid])  # bob left G2
    make_custom_field(tenant, "vip_level", CustomField.Type.NUMBER)
    make_custom_field(tenant, "skin", CustomField.Type.CHOICE, ["dry", "oily", "normal"])
    make_custom_field(tenant, "nickname", CustomField.Type.TEXT)
    make_custom_field(tenant, "joined", CustomField.Type.DATE)
    make_custom_field(tenant, "channels", CustomField.Type.MULTI_CHOICE, ["tmall", "jd", "pdd"])
    for n, day in enumerate((1, 4, 9)):
        purchase(ann, at=days_ago(day), amount_fen=5000, n=n)
    purchase(bob, at=days_ago(60), amount_fen=20000)
    purchase(dan, at=days_ago(5), amount_fen=990)
    happened(dan, "message.received", at=days_ago(1))
    for n in range(2):
        purchase(eve, at=days_ago(3), amount_fen=100, n=n)
    return Population(tenant, s1, s2, ann, bob, cat, dan, eve, vip, new, old, g1, g2)
