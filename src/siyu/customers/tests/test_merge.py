"""Dedupe and merge: candidates by unionid / verified phone, a merge that loses nothing,
automatic merges on a known unionid, and who may merge."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from siyu.community.models import GroupMember
from siyu.core.crypto import decrypt
from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.models import AuditEntry, Event
from siyu.customers import merge, profiles, services
from siyu.customers.models import (
    ChurnAlert,
    Customer,
    CustomerMerge,
    CustomerNote,
    CustomerTag,
    Follow,
    FollowTag,
    Handover,
    HandoverItem,
    Tag,
)
from siyu.engagement.models import StaffTask
from siyu.engagement.services import create_task
from siyu.segments.models import CustomerRFM, Segment, SegmentMember
from siyu.tenancy import services as tenancy
from siyu.testing.factories import CustomerFactory, GroupFactory, StaffFactory
from siyu.wecom import processors

TAGS = [
    {
        "group_id": "etLEVEL",
        "group_name": "等级",
        "tag": [{"id": "etGOLD", "name": "金卡"}, {"id": "etSILVER", "name": "银卡"}],
    }
]


@pytest.fixture
def system(tenant):
    return tenancy.system_actor(tenant)


@pytest.fixture
def staff(tenant):
    return {
        userid: StaffFactory(tenant=tenant, wecom_userid=userid, name=userid)
        for userid in ("s1", "s2")
    }


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    def block():
        return django_capture_on_commit_callbacks(execute=True)

    return block


def befriend(tenant, customer, staff, added_at, tags=()):
    follow, _began = services.upsert_follow(
        tenant, customer=customer, staff=staff, added_at=added_at, tag_ids=list(tags)
    )
    return follow


def note(tenant, customer, text, at):
    return CustomerNote.objects.for_tenant(tenant).create(
        tenant=tenant, customer=customer, content=text, happened_at=at
    )


def rfm(tenant, customer, at, frequency):
    return CustomerRFM.objects.for_tenant(tenant).create(
        tenant=tenant, customer=customer, frequency=frequency, computed_at=at
    )


@pytest.fixture
def pair(tenant, staff, system, at):
    """A (survivor) and B (duplicate) with every kind of related row, some of them clashing."""
    services.sync_corp_tags(tenant, TAGS)
    one, two = Segment.objects.for_tenant(tenant).bulk_create(
        [Segment(tenant=tenant, name="S1", kind="static"), Segment(tenant=tenant, name="S2")]
    )
    a, _ = services.upsert_customer(tenant, external_userid="wmA", name="Anna", unionid="u-1")
    b, _ = services.upsert_customer(tenant, external_userid="wmB", name="", unionid="u-1")
    befriend(tenant, a, staff["s1"], at(100), ["etGOLD"])
    befriend(tenant, b, staff["s1"], at(10), ["etSILVER"])  # the earlier add with s1
    b_s2 = befriend(tenant, b, staff["s2"], at(20), ["etGOLD"])
    profiles.update_profile(system, b, phone="13800000001", phone_verified=True, city="上海")
    profiles.update_profile(system, b, birthday=date(1990, 5, 1), interests=["茶", "咖啡"])
    profiles.update_profile(system, a, interests=["咖啡"])
    Customer.objects.for_tenant(tenant).filter(pk=a.pk).update(custom={"skin": "oily"})
    Customer.objects.for_tenant(tenant).filter(pk=b.pk).update(
        custom={"skin": "dry", "card": "V-9"}, last_interaction_at=at(500)
    )
    note(tenant, a, "A's note", at(1))
    note(tenant, b, "B's note", at(2))
    note(tenant, b, "B's call", at(3))
    create_task(tenant, staff["s1"], title="Call A", customer=a)
    create_task(tenant, staff["s2"], title="Call B", customer=b)
    ChurnAlert.objects.for_tenant(tenant).create(
        tenant=tenant,
        customer=b,
        follow=b_s2,
        staff=staff["s2"],
        kind="by_staff",
        occurred_at=at(30),
    )
    handover = Handover.objects.for_tenant(tenant).create(
        tenant=tenant, kind="in_service", from_staff=staff["s2"], to_staff=staff["s1"]
    )
    HandoverItem.objects.for_tenant(tenant).create(tenant=tenant, handover=handover, customer=b)
    members = SegmentMember.objects.for_tenant(tenant)
    members.create(tenant=tenant, segment=one, customer=a)
    members.create(tenant=tenant, segment=one, customer=b)  # clash: the same segment
    members.create(tenant=tenant, segment=two, customer=b)
    rfm(tenant, a, at(0), 3)
    rfm(tenant, b, at(0), 1)  # clash: one score per customer
    GroupFactory(tenant=tenant, owner=staff["s1"], members=[a])
    GroupFactory(tenant=tenant, owner=staff["s2"], members=[b])
    return reload(a), reload(b)


def reload(customer):
    return Customer.objects.for_tenant(customer.tenant_id).get(pk=customer.pk)


def counts(tenant, *customers) -> dict[str, Any]:
    """Rows of every related table pointing at these customers."""
    ids = [c.pk for c in customers]

    def of(model, path="customer_id__in"):
        return model.objects.for_tenant(tenant).filter(**{path: ids}).count()

    return {
        "follows": of(Follow),
        "follow_tags": of(FollowTag, "follow__customer_id__in"),
        "customer_tags": of(CustomerTag),
        "notes": of(CustomerNote),
        "tasks": of(StaffTask),
        "churn_alerts": of(ChurnAlert),
        "handover_items": of(HandoverItem),
        "segment_members": of(SegmentMember),
        "rfm": of(CustomerRFM),
        "group_members": of(GroupMember),
    }


def test_a_merge_loses_nothing(tenant, staff, system, pair, at):
    a, b = pair
    before = counts(tenant, a, b)
    assert before == {
        "follows": 3,
        "follow_tags": 3,
        "customer_tags": 3,
        "notes": 3,
        "tasks": 2,
        "churn_alerts": 1,
        "handover_items": 1,
        "segment_members": 3,
        "rfm": 2,
        "group_members": 2,
    }
    b_events = Event.objects.for_tenant(tenant).filter(customer_id=b.pk).count()
    # when
    record = merge.merge_customers(system, a, b, "unionid")
    # then everything points at A; the only rows gone are the ones A already had (same staff,
    # same tag, same segment, one score), and the snapshot holds them
    assert counts(tenant, b) == dict.fromkeys(before, 0)
    assert counts(tenant, a) == {
        "follows": 2,  # s1's two friendships folded into the earlier one
        "follow_tags": 3,  # s1: gold + silver, s2: gold
        "customer_tags": 2,  # gold, silver
        "notes": 3,
        "tasks": 2,
        "churn_alerts": 1,
        "handover_items": 1,
        "segment_members": 2,  # S1, S2
        "rfm": 1,
        "group_members": 2,
    }
    follows = {
        f.staff.wecom_userid: f
        for f in Follow.objects.for_tenant(tenant).filter(customer=a).select_related("staff")
    }
    assert follows["s1"].added_at == at(10)
    tags = {
        userid: sorted(
            FollowTag.objects.for_tenant(tenant)
            .filter(follow=follow)
            .values_list("tag__wecom_tag_id", flat=True)
        )
        for userid, follow in follows.items()
    }
    assert tags == {"s1": ["etGOLD", "etSILVER"], "s2": ["etGOLD"]}
    assert sorted(
        SegmentMember.objects.for_tenant(tenant).values_list("segment__name", flat=True)
    ) == [
        "S1",
        "S2",
    ]
    assert CustomerRFM.objects.for_tenant(tenant).get().frequency == 3
    # the profile: A's values kept, gaps filled from B
    a = reload(a)
    assert (a.name, a.city, a.birthday, a.phone, a.phone_verified) == (
        "Anna",
        "上海",
        date(1990, 5, 1),
        "13800000001",
        True,
    )
    assert a.phone_hash == profiles.phone_hash("13800000001")
    assert a.interests == ["咖啡", "茶"]
    assert a.custom == {"skin": "oily", "card": "V-9"}
    assert (a.first_added_at, a.last_interaction_at, a.owner) == (at(10), at(500), staff["s1"])
    # the duplicate is a tombstone; its events stay where they were and the timeline reads both
    b = reload(b)
    assert (b.merged_into, b.owner) == (a, None)
    assert Event.objects.for_tenant(tenant).filter(customer_id=b.pk).count() == b_events
    assert merge.merged_customer_ids(tenant, a.pk) == [a.pk, b.pk]
    merged = Event.objects.for_tenant(tenant).get(type="customer.merged")
    assert merged.customer_id == a.pk
    assert merged.payload["moved"]["follows_folded"] == 1
    # the snapshot keeps the whole of B, the phone encrypted
    assert (record.survivor, record.merged_customer_id, record.reason) == (a, b.pk, "unionid")
    snapshot = record.snapshot
    assert snapshot["customer"]["external_userid"] == "wmB"
    assert "phone" not in snapshot["customer"]
    assert decrypt(snapshot["customer"]["phone_encrypted"]) == "13800000001"
    assert sorted(f["staff_userid"] for f in snapshot["follows"]) == ["s1", "s2"]
    gold = Tag.objects.for_tenant(tenant).get(wecom_tag_id="etGOLD").pk
    assert [f["tag_ids"] for f in snapshot["follows"] if f["staff_userid"] == "s2"] == [[gold]]
    assert len(snapshot["note_ids"]) == 2 and len(snapshot["segment_ids"]) == 2
    assert snapshot["rfm"]["frequency"] == 1
    assert AuditEntry.objects.for_tenant(tenant).filter(action="customer.merged").count() == 1


def test_the_live_friendship_wins_when_the_earlier_one_had_ended(tenant, staff, system, at):
    a = CustomerFactory(tenant=tenant, staff=staff["s1"], added_at=at(100))
    b = CustomerFactory(tenant=tenant, staff=staff["s1"], added_at=at(10))
    services.remove_follow(tenant, customer=b, staff=staff["s1"], by="customer", at=at(50))
    services.upsert_follow(tenant, customer=a, staff=staff["s1"], added_at=at(100), remark="VIP")
    merge.merge_customers(system, a, b)
    follow = Follow.objects.for_tenant(tenant).get(customer=a)
    assert (follow.added_at, follow.status, follow.remark) == (at(10), "active", "VIP")


def test_merges_of_merges_point_at_the_last_survivor(tenant, staff, system):
    a, b, c = (CustomerFactory(tenant=tenant, staff=staff["s1"]) for _ in range(3))
    merge.merge_customers(system, b, a)
    merge.merge_customers(system, c, b)
    assert reload(a).merged_into == c
    assert merge.merged_customer_ids(tenant, c.pk) == [c.pk, a.pk, b.pk]
    assert CustomerMerge.objects.for_tenant(tenant).count() == 2


@pytest.mark.parametrize(
    ("case", "error"),
    [("itself", InvalidInput), ("merged", Conflict), ("reason", InvalidInput)],
)
def test_impossible_merges_are_refused(tenant, staff, system, case, error):
    a, b, c = (CustomerFactory(tenant=tenant, staff=staff["s1"]) for _ in range(3))
    merge.merge_customers(system, a, c)
    survivor, duplicate, reason = {
        "itself": (a, a, "manual"),
        "merged": (b, c, "manual"),
        "reason": (a, b, "because"),
    }[case]
    with pytest.raises(error):
        merge.merge_customers(system, survivor, duplicate, reason)


def test_merging_needs_the_right_and_stays_within_the_tenant(
    tenant, other_tenant, staff, actor_of, system
):
    a, b = (CustomerFactory(tenant=tenant, staff=staff["s1"]) for _ in range(2))
    foreign = CustomerFactory(tenant=other_tenant)
    seller = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="seller")
    with pytest.raises(Forbidden):
        merge.merge_customers(actor_of(seller), a, b)
    with pytest.raises(NotFound):
        merge.merge_customers(system, a, foreign)
    assert Customer.objects.for_tenant(tenant).filter(merged_into__isnull=False).count() == 0


def test_duplicates_are_found_by_unionid_and_verified_phone_only(tenant, staff, system, actor_of):
    def customer(**profile):
        row = CustomerFactory(tenant=tenant, staff=staff["s1"], unionid=profile.pop("unionid", ""))
        if profile:
            profiles.update_profile(system, row, **profile)
        return row

    u1, u2 = customer(unionid="u-9"), customer(unionid="u-9")
    p1 = customer(phone="13900000009", phone_verified=True)
    p2 = customer(phone="+86 139-0000-0009", phone_verified=True)
    customer(phone="13900000009")  # not verified: no candidate
    customer(unionid="u-lonely")
    groups = merge.duplicate_groups(system)
    assert [(g.reason, g.ids) for g in groups] == [
        ("unionid", [u1.pk, u2.pk]),
        ("phone", [p1.pk, p2.pk]),
    ]
    assert groups[0].suggested_survivor == u1
    # a merged pair is no candidate any more; a sales staff sees only their own customers' pairs
    merge.merge_customers(system, u1, u2)
    assert [g.reason for g in merge.duplicate_groups(system)] == ["phone"]
    other = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="other")
    assert merge.duplicate_groups(actor_of(other)) == []


def test_a_new_friendship_with_a_known_unionid_merges_automatically(tenant, staff, on_commit, at):
    # given an imported record (no WeCom friendship) with a unionid
    imported, _ = services.upsert_customer(tenant, external_userid="import-1", unionid="u-7")
    CustomerNote.objects.for_tenant(tenant).create(
        tenant=tenant, customer=imported, content="bought offline", happened_at=at(0)
    )
    # when the same person adds a staff in WeCom
    with on_commit():
        real, _ = services.upsert_customer(tenant, external_userid="wmREAL", unionid="u-7")
        services.upsert_follow(tenant, customer=real, staff=staff["s1"], added_at=at(5))
    # then one record, the WeCom one, holding the note
    assert reload(imported).merged_into == real
    assert CustomerNote.objects.for_tenant(tenant).get().customer == real
    assert CustomerMerge.objects.for_tenant(tenant).get().reason == "unionid"


def test_new_friends_dispatched_together_merge_only_those_with_a_known_unionid(
    tenant, staff, on_commit, at
):
    imported, _ = services.upsert_customer(tenant, external_userid="import-3", unionid="u-3")
    # when three new friends arrive in one burst (one transaction, events dispatched together)
    with on_commit():
        new = {}
        for external_userid, unionid in [("wmX", "u-3"), ("wmY", "u-4"), ("wmZ", "")]:
            new[external_userid], _ = services.upsert_customer(
                tenant, external_userid=external_userid, unionid=unionid
            )
        services.add_follows(
            tenant, [(customer, staff["s1"], {"added_at": at(5)}) for customer in new.values()]
        )
    # then only the one whose unionid was known merged
    assert reload(imported).merged_into == new["wmX"]
    assert CustomerMerge.objects.for_tenant(tenant).count() == 1
    assert merge.auto_merge_on_unionids(tenant, [c.pk for c in new.values()]) == []


def test_a_unionid_arriving_later_merges_too(tenant, staff, on_commit, at):
    imported, _ = services.upsert_customer(tenant, external_userid="import-2", unionid="u-8")
    real = CustomerFactory(tenant=tenant, staff=staff["s1"], external_userid="wmLATE")
    with on_commit():
        services.upsert_customer(tenant, external_userid="wmLATE", unionid="u-8", seen_at=at(9))
    assert reload(imported).merged_into == real


def test_callbacks_for_a_merged_external_userid_land_on_the_survivor(
    tenant, staff, system, on_commit, at
):
    a = CustomerFactory(tenant=tenant, staff=staff["s1"], added_at=at(0))
    b = CustomerFactory(tenant=tenant, staff=staff["s2"], added_at=at(1))
    merge.merge_customers(system, a, b)
    message = {
        "Event": "change_external_contact",
        "ChangeType": "del_follow_user",
        "UserID": "s2",
        "ExternalUserID": b.external_userid,
        "CreateTime": str(int(at(60).timestamp())),
    }
    with on_commit():
        assert processors.friendship_deleted(tenant, message) is True
    follow = Follow.objects.for_tenant(tenant).get(customer=a, staff=staff["s2"])
    assert follow.status == "deleted_by_customer"
    assert ChurnAlert.objects.for_tenant(tenant).get().customer == a
