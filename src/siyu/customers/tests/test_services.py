"""Customers, friendships and corp tags as WeCom sync and callbacks write them."""

from __future__ import annotations

import pytest
from django.utils import translation

from siyu.core.errors import InvalidInput, NotFound
from siyu.core.models import Event
from siyu.customers import services
from siyu.customers.models import Customer, Follow, FollowTag, Tag, TagGroup
from siyu.tenancy.services import staff_by_userid
from siyu.testing.factories import CustomerFactory, StaffFactory

PROFILE = {
    "external_userid": "wmCUSTOMER0001",
    "name": "李四",
    "avatar": "https://example.com/a.png",
    "type": 1,
    "gender": 2,
    "unionid": "oUNION0001",
}


def add(tenant, customer, staff, added_at, **fields):
    return services.upsert_follow(
        tenant, customer=customer, staff=staff, added_at=added_at, **fields
    )


def reload(customer):
    return Customer.objects.for_tenant(customer.tenant_id).get(pk=customer.pk)


# --- customers ------------------------------------------------------------------------------
def test_upserting_the_same_customer_twice_leaves_one_row_and_no_event(tenant, events_of):
    # when
    first, created = services.upsert_customer(tenant, **PROFILE)
    again, created_again = services.upsert_customer(tenant, **PROFILE)
    # then
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert Customer.objects.for_tenant(tenant).count() == 1
    assert events_of("customer.added", "customer.updated") == []


def test_a_changed_profile_records_one_update_event(tenant, at, events_of):
    # given
    services.upsert_customer(tenant, **PROFILE, seen_at=at(0))
    # when
    for _ in range(2):
        customer, _created = services.upsert_customer(
            tenant, **{**PROFILE, "name": "李四四"}, seen_at=at(5)
        )
    # then
    assert customer.name == "李四四"
    (event,) = events_of("customer.updated")
    assert event.customer_id == customer.pk
    assert event.payload["changes"] == {"name": ["李四", "李四四"]}
    assert event.occurred_at == at(5)


def test_an_older_profile_update_is_ignored(tenant, at, events_of):
    # given
    services.upsert_customer(tenant, **{**PROFILE, "name": "New"}, seen_at=at(10))
    # when
    customer, _created = services.upsert_customer(
        tenant, **{**PROFILE, "name": "Old"}, seen_at=at(5)
    )
    # then
    assert reload(customer).name == "New"
    assert reload(customer).wecom_seen_at == at(10)
    assert events_of("customer.updated") == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"external_userid": ""}, "external_userid must be 1 to 64 characters"),
        ({"external_userid": "x" * 65}, "external_userid must be 1 to 64 characters"),
        ({"type": 3}, "Unknown customer type 3"),
    ],
)
def test_malformed_customers_are_refused(tenant, fields, message):
    with translation.override("en"), pytest.raises(InvalidInput, match=message):
        services.upsert_customer(tenant, **{**PROFILE, **fields})


# --- follows ----------------------------------------------------------------------------------
def test_the_first_friendship_records_customer_added_and_follow_added_once(
    tenant, sales_staff, at, events_of
):
    # given
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    # when
    follow, began = add(tenant, customer, sales_staff, at(0), state="cc_spring", add_way=1)
    again, began_again = add(tenant, customer, sales_staff, at(0), state="cc_spring", add_way=1)
    # then
    assert (began, began_again) == (True, False)
    assert follow.pk == again.pk
    assert Follow.objects.for_tenant(tenant).count() == 1
    added, followed = events_of("customer.added", "follow.added")
    assert added.type == "customer.added"
    assert added.idempotency_key == "customer.added:wmCUSTOMER0001"
    assert followed.idempotency_key == (
        f"follow.added:wmCUSTOMER0001:sales1:{int(at(0).timestamp())}"
    )
    assert followed.payload == {
        "external_userid": "wmCUSTOMER0001",
        "userid": "sales1",
        "added_at": at(0).isoformat(),
        "add_way": 1,
        "state": "cc_spring",
        "oper_userid": "",
        "first_for_customer": True,
    }
    assert (followed.staff, followed.customer_id, followed.occurred_at) == (
        sales_staff,
        customer.pk,
        at(0),
    )
    customer = reload(customer)
    assert (customer.owner, customer.first_added_at, customer.source_state) == (
        sales_staff,
        at(0),
        "cc_spring",
    )


def test_a_customer_added_by_two_staff_is_one_customer_with_two_follows(
    tenant, sales_staff, other_sales, at, events_of
):
    # given
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    # when
    add(tenant, customer, other_sales, at(30), state="second")
    add(tenant, customer, sales_staff, at(10), state="first")
    # then
    assert Customer.objects.for_tenant(tenant).count() == 1
    follows = Follow.objects.for_tenant(tenant).filter(customer=customer)
    assert sorted(f.staff.wecom_userid for f in follows) == ["sales1", "sales2"]
    assert len(events_of("customer.added")) == 1
    assert len(events_of("follow.added")) == 2
    customer = reload(customer)
    # The earliest friendship decides the owner and the source, whatever the arrival order.
    assert (customer.owner, customer.first_added_at, customer.source_state) == (
        sales_staff,
        at(10),
        "first",
    )
    (changed,) = events_of("customer.owner_changed")
    assert changed.payload["from_userid"] == "sales2"
    assert changed.payload["to_userid"] == "sales1"


def test_a_changed_remark_records_follow_updated_once(tenant, sales_staff, at, events_of):
    # given
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    add(tenant, customer, sales_staff, at(0), seen_at=at(0))
    # when
    for _ in range(2):
        follow, began = add(
            tenant,
            customer,
            sales_staff,
            at(0),
            remark="VIP",
            remark_mobiles=["138"],
            seen_at=at(1),
        )
    # then
    assert (began, follow.remark, follow.remark_mobiles) == (False, "VIP", ["138"])
    (event,) = events_of("follow.updated")
    assert event.payload["changes"] == {"remark": ["", "VIP"], "remark_mobiles": [[], ["138"]]}


def test_an_older_follow_update_is_ignored(tenant, sales_staff, at, events_of):
    # given
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    add(tenant, customer, sales_staff, at(0), remark="new", seen_at=at(10))
    # when
    follow, began = add(tenant, customer, sales_staff, at(0), remark="old", seen_at=at(5))
    # then
    assert began is False
    stored = Follow.objects.for_tenant(tenant).get(pk=follow.pk)
    assert (stored.remark, stored.wecom_seen_at) == ("new", at(10))
    assert events_of("follow.updated") == []


def test_another_tenants_staff_cannot_befriend_a_customer(tenant, other_tenant, at):
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    stranger = StaffFactory(tenant=other_tenant)
    with pytest.raises(NotFound):
        add(tenant, customer, stranger, at(0))


def test_naive_times_are_refused(tenant, sales_staff):
    from datetime import datetime

    customer, _created = services.upsert_customer(tenant, **PROFILE)
    with translation.override("en"), pytest.raises(InvalidInput, match="must carry a time zone"):
        add(tenant, customer, sales_staff, datetime(2026, 11, 1, 9, 0))


def test_wecom_unix_seconds_are_accepted(tenant, sales_staff, at):
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    follow, _began = add(tenant, customer, sales_staff, int(at(0).timestamp()))
    assert follow.added_at == at(0)


# --- removing follows -------------------------------------------------------------------------
def test_a_customer_deleting_their_last_staff_is_churn_and_makes_them_lost(
    tenant, sales_staff, at, events_of
):
    # given
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0))
    # when
    for _ in range(2):
        follow = services.remove_follow(
            tenant, customer=customer, staff=sales_staff, by="customer", at=at(60), source="wecom"
        )
    # then
    assert (follow.status, follow.deleted_at) == ("deleted_by_customer", at(60))
    (deleted,) = events_of("follow.deleted_by_customer")
    assert deleted.idempotency_key == (
        f"follow.deleted_by_customer:{customer.external_userid}:sales1:{int(at(0).timestamp())}"
    )
    assert (deleted.staff, deleted.customer_id, deleted.source) == (
        sales_staff,
        customer.pk,
        "wecom",
    )
    (lost,) = events_of("customer.lost")
    assert lost.payload["by"] == "customer"
    customer = reload(customer)
    assert (customer.status, customer.lost_at, customer.owner) == ("lost", at(60), sales_staff)


def test_a_staff_deleting_one_of_two_follows_keeps_the_customer_and_moves_the_owner(
    tenant, sales_staff, other_sales, at, events_of
):
    # given
    customer = CustomerFactory(
        tenant=tenant, followed_by=[sales_staff, other_sales], added_at=at(0)
    )
    # when
    services.remove_follow(tenant, customer=customer, staff=sales_staff, by="staff", at=at(60))
    # then
    assert len(events_of("follow.deleted_by_staff")) == 1
    assert events_of("follow.deleted_by_customer", "customer.lost") == []
    customer = reload(customer)
    assert (customer.status, customer.owner) == ("active", other_sales)
    assert events_of("customer.owner_changed")[-1].payload["to_userid"] == "sales2"


def test_removing_a_friendship_that_never_was_does_nothing(tenant, sales_staff, at):
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    assert (
        services.remove_follow(tenant, customer=customer, staff=sales_staff, by="staff", at=at(0))
        is None
    )


def test_remove_follow_needs_to_know_who_deleted(tenant, sales_staff, at):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    with pytest.raises(InvalidInput):
        services.remove_follow(tenant, customer=customer, staff=sales_staff, by="robot", at=at(0))


def test_a_re_add_reactivates_the_follow_and_brings_the_customer_back(
    tenant, sales_staff, at, events_of
):
    # given
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0))
    services.remove_follow(tenant, customer=customer, staff=sales_staff, by="customer", at=at(60))
    # when
    results = [add(tenant, customer, sales_staff, at(120), state="comeback") for _ in range(2)]
    # then
    assert [began for _follow, began in results] == [True, False]
    follow = results[-1][0]
    assert (follow.status, follow.deleted_at, follow.added_at) == ("active", None, at(120))
    assert Follow.objects.for_tenant(tenant).count() == 1
    assert len(events_of("follow.added")) == 2
    assert len(events_of("customer.added")) == 1
    (returned,) = events_of("customer.returned")
    assert returned.payload["state"] == "comeback"
    customer = reload(customer)
    assert (customer.status, customer.lost_at, customer.source_state) == ("active", None, "")


def test_a_late_deletion_does_not_end_a_newer_friendship(tenant, sales_staff, at, events_of):
    # given: deleted at 60, re-added at 120; the deletion's callback is delivered again late
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0))
    services.remove_follow(tenant, customer=customer, staff=sales_staff, by="customer", at=at(60))
    add(tenant, customer, sales_staff, at(120), seen_at=at(120))
    # when
    follow = services.remove_follow(
        tenant, customer=customer, staff=sales_staff, by="customer", at=at(60)
    )
    # then
    assert follow.status == "active"
    assert len(events_of("follow.deleted_by_customer")) == 1
    assert reload(customer).status == "active"


def test_a_sync_read_before_a_deletion_does_not_resurrect_the_friendship(
    tenant, sales_staff, at, events_of
):
    # given
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0))
    services.remove_follow(tenant, customer=customer, staff=sales_staff, by="customer", at=at(60))
    # when: the stale snapshot still lists the friendship that began at 0
    follow, began = add(tenant, customer, sales_staff, at(0))
    # then
    assert (began, follow.status) == (False, "deleted_by_customer")
    assert reload(customer).status == "lost"


# --- tags ------------------------------------------------------------------------------------
WECOM_TAGS = [
    {
        "group_id": "etGROUP1",
        "group_name": "客户等级",
        "create_time": 1557838797,
        "order": 2,
        "tag": [
            {"id": "etTAG_A", "name": "高意向", "create_time": 1557838797, "order": 2},
            {"id": "etTAG_B", "name": "低意向", "create_time": 1557838797, "order": 1},
        ],
    },
    {
        "group_id": "etGROUP2",
        "group_name": "兴趣",
        "create_time": 1557838797,
        "order": 1,
        "tag": [{"id": "etTAG_C", "name": "咖啡", "create_time": 1557838797, "order": 1}],
    },
]


def live_tags(tenant) -> list[str]:
    return sorted(
        Tag.objects.for_tenant(tenant).filter(deleted=False).values_list("wecom_tag_id", flat=True)
    )


def test_syncing_corp_tags_creates_them_once(tenant, events_of):
    # when
    first = services.sync_corp_tags(tenant, WECOM_TAGS)
    second = services.sync_corp_tags(tenant, WECOM_TAGS)
    # then
    assert (first.groups_created, first.tags_created) == (2, 3)
    assert second.changed is False
    assert live_tags(tenant) == ["etTAG_A", "etTAG_B", "etTAG_C"]
    tag = Tag.objects.for_tenant(tenant).get(wecom_tag_id="etTAG_A")
    assert (tag.name, tag.group.name, tag.order) == ("高意向", "客户等级", 2)
    (event,) = events_of("tag.synced")
    assert event.payload["tag_ids"]["created"] == ["etTAG_A", "etTAG_B", "etTAG_C"]


def test_tags_and_groups_wecom_no_longer_lists_are_marked_deleted(tenant, events_of):
    # given
    services.sync_corp_tags(tenant, WECOM_TAGS)
    shrunk = [{**WECOM_TAGS[0], "tag": WECOM_TAGS[0]["tag"][:1]}]
    # when
    stats = services.sync_corp_tags(tenant, shrunk)
    # then
    assert (stats.tags_deleted, stats.groups_deleted) == (2, 1)
    assert live_tags(tenant) == ["etTAG_A"]
    assert TagGroup.objects.for_tenant(tenant).get(wecom_group_id="etGROUP2").deleted is True
    assert events_of("tag.synced")[-1].payload["tag_ids"]["deleted"] == ["etTAG_B", "etTAG_C"]
    # and a tag that comes back is restored
    services.sync_corp_tags(tenant, WECOM_TAGS)
    assert live_tags(tenant) == ["etTAG_A", "etTAG_B", "etTAG_C"]


def test_a_tag_flagged_deleted_by_wecom_is_marked_deleted(tenant):
    services.sync_corp_tags(tenant, WECOM_TAGS)
    flagged = [
        {**WECOM_TAGS[0], "tag": [{**WECOM_TAGS[0]["tag"][0], "deleted": True}]},
        WECOM_TAGS[1],
    ]
    services.sync_corp_tags(tenant, flagged)
    assert live_tags(tenant) == ["etTAG_C"]


def test_tag_sync_refuses_entries_without_ids(tenant):
    with pytest.raises(InvalidInput):
        services.sync_corp_tags(tenant, [{"group_name": "no id", "tag": []}])


def test_follow_tags_follow_wecom_and_report_unknown_ids(tenant, sales_staff, at, events_of):
    # given
    services.sync_corp_tags(tenant, WECOM_TAGS)
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0))
    follow = Follow.objects.for_tenant(tenant).get(customer=customer)
    # when
    change = services.set_follow_tags(tenant, follow, ["etTAG_A", "etTAG_B", "etNOT_SYNCED"])
    repeated = services.set_follow_tags(tenant, follow, ["etTAG_A", "etTAG_B"])
    narrowed = services.set_follow_tags(tenant, follow, ["etTAG_B"])
    # then
    assert (change.added, change.unknown) == (["etTAG_A", "etTAG_B"], ["etNOT_SYNCED"])
    assert repeated.changed is False
    assert narrowed.removed == ["etTAG_A"]
    links = FollowTag.objects.for_tenant(tenant).filter(follow=follow)
    assert [link.tag.wecom_tag_id for link in links] == ["etTAG_B"]
    assert [e.payload["removed"] for e in events_of("follow.tags_changed")] == [[], ["etTAG_A"]]


def test_upsert_follow_sets_tags_and_removal_drops_them(tenant, sales_staff, at, events_of):
    # given
    services.sync_corp_tags(tenant, WECOM_TAGS)
    customer, _created = services.upsert_customer(tenant, **PROFILE)
    # when
    follow, _began = add(tenant, customer, sales_staff, at(0), tag_ids=["etTAG_C"])
    add(tenant, customer, sales_staff, at(0), tag_ids=["etTAG_C"])
    services.remove_follow(tenant, customer=customer, staff=sales_staff, by="staff", at=at(5))
    # then
    assert len(events_of("follow.tags_changed")) == 1
    assert not FollowTag.objects.for_tenant(tenant).filter(follow=follow).exists()
    assert events_of("follow.deleted_by_staff")[0].payload["tag_ids"] == ["etTAG_C"]


def test_tag_ids_of_another_tenant_are_unknown(tenant, other_tenant, sales_staff, at):
    services.sync_corp_tags(other_tenant, WECOM_TAGS)
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    follow = Follow.objects.for_tenant(tenant).get(customer=customer)
    change = services.set_follow_tags(tenant, follow, ["etTAG_A"])
    assert (change.added, change.unknown) == ([], ["etTAG_A"])


# --- shared helpers ----------------------------------------------------------------------------
def test_staff_by_userid_finds_only_the_tenants_staff(tenant, other_tenant, sales_staff):
    StaffFactory(tenant=other_tenant, wecom_userid="sales1")
    found = staff_by_userid(tenant, ["sales1", "nobody", ""])
    assert found == {"sales1": sales_staff}


def test_long_keys_are_hashed_to_fit():
    key = services.event_key("follow.added", "x" * 300)
    assert key.startswith("follow.added:sha256:") and len(key) <= 200


def test_every_event_names_the_customer(tenant, sales_staff, at):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, added_at=at(0))
    services.remove_follow(tenant, customer=customer, staff=sales_staff, by="customer", at=at(1))
    recorded = Event.objects.for_tenant(tenant).filter(type__regex=r"^(customer|follow)\.")
    assert {event.customer_id for event in recorded} == {customer.pk}


# --- concurrency ---------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_sync_and_callbacks_racing_over_one_new_customer_record_each_fact_once():
    """Staff A and B add the same new customer; a sync and a callback deliver each add."""
    import threading
    from datetime import UTC, datetime

    from django.db import connections

    from siyu.testing.factories import TenantFactory

    tenant = TenantFactory()
    first = StaffFactory(tenant=tenant, wecom_userid="race-a")
    second = StaffFactory(tenant=tenant, wecom_userid="race-b")
    added_at = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    barrier = threading.Barrier(4)
    errors = []

    def deliver(staff):
        try:
            barrier.wait(timeout=10)
            customer, _created = services.upsert_customer(tenant, **PROFILE)
            services.upsert_follow(tenant, customer=customer, staff=staff, added_at=added_at)
        except Exception as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(s,)) for s in (first, second) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert Customer.objects.for_tenant(tenant).count() == 1
    assert Follow.objects.for_tenant(tenant).count() == 2
    recorded = Event.objects.for_tenant(tenant)
    assert recorded.filter(type="customer.added").count() == 1
    assert recorded.filter(type="follow.added").count() == 2
