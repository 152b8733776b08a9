"""Many customers and friendships at once (a first WeCom import): the same result as one by one."""

from __future__ import annotations

from typing import Any

import pytest

from siyu.core.errors import InvalidInput
from siyu.core.events import EventSpec, record_event, record_events
from siyu.core.models import Event
from siyu.customers import services
from siyu.customers.models import Customer, Follow, FollowTag
from siyu.testing.factories import StaffFactory, TenantFactory

TAGS = [
    {
        "group_id": "etGROUP",
        "group_name": "等级",
        "tag": [{"id": "etGOLD", "name": "金卡"}, {"id": "etSILVER", "name": "银卡"}],
    }
]


def world(tenant, at) -> dict[str, Any]:
    """Staff, tags, and the state before the batch: customers A (one friend) and C (lost)."""
    staff = {
        userid: StaffFactory(tenant=tenant, wecom_userid=userid, name=userid)
        for userid in ("s1", "s2", "s3")
    }
    services.sync_corp_tags(tenant, TAGS, seen_at=at(0))
    a, _ = services.upsert_customer(tenant, external_userid="wmA", name="A")
    services.upsert_follow(tenant, customer=a, staff=staff["s1"], added_at=at(10), seen_at=at(10))
    c, _ = services.upsert_customer(tenant, external_userid="wmC", name="C")
    services.upsert_follow(tenant, customer=c, staff=staff["s3"], added_at=at(1), seen_at=at(1))
    services.remove_follow(tenant, customer=c, staff=staff["s3"], by="customer", at=at(2))
    return staff


def batch(staff: dict[str, Any], at) -> tuple[list[dict[str, Any]], list[tuple[str, str, dict]]]:
    profiles = [
        {"external_userid": "wmA", "name": "A"},
        {"external_userid": "wmB", "name": "B", "gender": 2, "unionid": "uB"},
        {"external_userid": "wmC", "name": "C"},
        {"external_userid": "wmD", "name": "D"},
    ]
    follows = [
        # a new customer befriended by two staff: the later-listed one is earlier (owner moves)
        ("wmB", "s1", {"added_at": at(5), "state": "cc", "tag_ids": ["etGOLD", "etNOPE"]}),
        ("wmB", "s2", {"added_at": at(3), "remark": "老客", "tag_ids": []}),
        # an existing customer, a new friend earlier than the owner's
        ("wmA", "s2", {"added_at": at(1), "tag_ids": ["etSILVER", "etGOLD"]}),
        # an existing friendship, changed (one by one)
        ("wmA", "s1", {"added_at": at(10), "remark": "改了", "tag_ids": ["etGOLD"]}),
        # a lost customer comes back (one by one: customer.returned)
        ("wmC", "s2", {"added_at": at(20), "tag_ids": None}),
        # the same pair twice in one batch
        ("wmD", "s3", {"added_at": at(7), "tag_ids": []}),
        ("wmD", "s3", {"added_at": at(7), "description": "again", "tag_ids": []}),
    ]
    return profiles, follows


def snapshot(tenant) -> dict[str, Any]:
    customers = [
        (
            c.external_userid,
            c.name,
            c.gender,
            c.unionid,
            c.status,
            c.owner.wecom_userid if c.owner else None,
            c.first_added_at,
            c.source_state,
            c.wecom_seen_at,
        )
        for c in Customer.objects.for_tenant(tenant).order_by("external_userid")
    ]
    follows = [
        (
            f.customer.external_userid,
            f.staff.wecom_userid,
            f.status,
            f.added_at,
            f.remark,
            f.description,
            f.state,
            f.wecom_seen_at,
            sorted(FollowTag.objects.for_tenant(tenant).filter(follow=f).values_list("tag__name")),
        )
        for f in Follow.objects.for_tenant(tenant).order_by("customer__external_userid", "staff")
    ]
    events = [
        (
            e.type,
            e.idempotency_key,
            e.payload,
            e.staff.wecom_userid if e.staff else None,
            e.customer_id and Customer.objects.for_tenant(tenant).get(pk=e.customer_id).name,
            e.occurred_at,
            e.source,
        )
        for e in Event.objects.for_tenant(tenant)
        .exclude(type__startswith="tenant.")
        .exclude(type__startswith="staff.")
        .order_by("id")
    ]
    return {"customers": customers, "follows": follows, "events": events}


def test_bulk_writes_leave_the_same_rows_and_events_as_one_by_one(db, at):
    # given: two tenants in the same state
    one, bulk = TenantFactory(slug="one-by-one"), TenantFactory(slug="in-bulk")
    staff_one, staff_bulk = world(one, at), world(bulk, at)
    profiles, follows = batch(staff_one, at)
    seen = at(30)
    # when: one by one ...
    rows = {}
    for profile in profiles:
        rows[profile["external_userid"]], _ = services.upsert_customer(one, **profile, seen_at=seen)
    one_by_one = [
        services.upsert_follow(
            one, customer=rows[euid], staff=staff_one[userid], seen_at=seen, **fields
        )[1]
        for euid, userid, fields in follows
    ]
    # ... and in bulk
    created = services.create_customers(bulk, profiles, seen_at=seen)
    for profile in profiles:  # known customers: their profile is refreshed one by one
        if not created[profile["external_userid"]][1]:
            services.upsert_customer(bulk, **profile, seen_at=seen)
    in_bulk = services.add_follows(
        bulk,
        [(created[euid][0], staff_bulk[userid], fields) for euid, userid, fields in follows],
        seen_at=seen,
    )
    # then
    assert [began for _follow, began in in_bulk] == one_by_one
    assert [c for c, (_row, new) in created.items() if new] == ["wmB", "wmD"]
    expected, actual = snapshot(one), snapshot(bulk)
    assert actual["customers"] == expected["customers"]
    assert actual["follows"] == expected["follows"]
    # the same events; each customer's in the same order (customers may interleave)
    assert sorted(map(repr, actual["events"])) == sorted(map(repr, expected["events"]))
    for name in ("A", "B", "C", "D"):
        assert [e for e in actual["events"] if e[4] == name] == [
            e for e in expected["events"] if e[4] == name
        ]
    types = [event[0] for event in actual["events"]]
    assert "customer.owner_changed" in types and "customer.returned" in types


def test_bulk_writes_are_idempotent(db, at):
    tenant = TenantFactory(slug="twice")
    staff = StaffFactory(tenant=tenant, wecom_userid="s1")
    profiles = [{"external_userid": f"wm{n}", "name": f"c{n}"} for n in range(3)]
    for _round in range(2):
        created = services.create_customers(tenant, profiles, seen_at=at(1))
        services.add_follows(
            tenant,
            [(row, staff, {"added_at": at(0)}) for row, _new in created.values()],
            seen_at=at(1),
        )
    assert Customer.objects.for_tenant(tenant).count() == 3
    assert Follow.objects.for_tenant(tenant).count() == 3
    assert Event.objects.for_tenant(tenant).filter(type="follow.added").count() == 3


def test_an_invalid_profile_creates_nothing(db):
    tenant = TenantFactory(slug="invalid")
    with pytest.raises(InvalidInput):
        services.create_customers(
            tenant, [{"external_userid": "wmok"}, {"external_userid": "x" * 65}]
        )
    assert not Customer.objects.for_tenant(tenant).exists()


def test_record_events_keeps_the_first_of_each_key(db, django_capture_on_commit_callbacks):
    tenant = TenantFactory(slug="events")
    first, _ = record_event(tenant, "demo.happened", key="k1")
    with django_capture_on_commit_callbacks() as callbacks:
        results = record_events(
            tenant,
            [
                EventSpec("demo.happened", "k1"),
                EventSpec("demo.happened", "k2", payload={"n": 1}),
                EventSpec("demo.happened", "k2", payload={"n": 2}),
                EventSpec("demo.other"),
            ],
        )
    assert [created for _event, created in results] == [False, True, False, True]
    assert results[0][0] == first and results[1][0] == results[2][0]
    assert results[2][0].payload == {"n": 1}
    assert Event.objects.for_tenant(tenant).count() == 4  # tenant.created, k1, k2, auto
    assert len(callbacks) == 2  # the two new events are dispatched after commit
