"""Customer groups and their members as WeCom sync and callbacks write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from siyu.community import services
from siyu.community.handlers import link_new_customer_to_group_memberships
from siyu.community.models import Group, GroupMember
from siyu.core.errors import NotFound
from siyu.core.models import Event
from siyu.testing.factories import CustomerFactory, StaffFactory

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CHAT = "wrCHAT0001"


def at(minutes: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes)


def member(userid: str, kind: int = 2, joined: float = 0, **extra) -> dict:
    """A WeCom ``member_list`` entry."""
    return {
        "userid": userid,
        "type": kind,
        "join_time": int(at(joined).timestamp()),
        "join_scene": 3,
        "invitor": {"userid": "sales1"},
        **extra,
    }


def snapshot(tenant, members, *, seen: float | None = None, **fields):
    values = {
        "chat_id": CHAT,
        "name": "会员福利群",
        "owner_userid": "sales1",
        "notice": "",
        "created_at": at(0),
        "admin_userids": [],
        **fields,
    }
    return services.upsert_group(
        tenant, members=members, seen_at=at(seen) if seen is not None else None, **values
    )


@pytest.fixture
def events_of(tenant):
    def find(*types: str) -> list[Event]:
        return list(Event.objects.for_tenant(tenant).filter(type__in=types).order_by("id"))

    return find


def active_userids(group) -> list[str]:
    return sorted(
        GroupMember.objects.for_tenant(group.tenant_id)
        .filter(group=group, status="active")
        .values_list("userid", flat=True)
    )


# --- groups ----------------------------------------------------------------------------
def test_upserting_a_group_twice_leaves_one_group_and_one_event_per_fact(
    tenant, sales_staff, events_of
):
    # given
    members = [member("sales1", kind=1), member("wmA", joined=1), member("wmB", joined=2)]
    # when
    group, created = snapshot(tenant, members, seen=5)
    again, created_again = snapshot(tenant, members, seen=5)
    # then
    assert (created, created_again) == (True, False)
    assert Group.objects.for_tenant(tenant).count() == 1
    assert (again.owner, again.member_count, again.customer_member_count) == (sales_staff, 3, 2)
    (created_event,) = events_of("group.created")
    assert created_event.idempotency_key == f"group.created:{CHAT}"
    joined = events_of("group.member_joined")
    assert [e.payload["userid"] for e in joined] == ["sales1", "wmA", "wmB"]
    assert joined[1].idempotency_key == (f"group.member_joined:{CHAT}:wmA:{int(at(1).timestamp())}")
    assert (joined[1].occurred_at, joined[1].group_id, joined[1].staff) == (
        at(1),
        group.pk,
        sales_staff,
    )
    assert joined[1].payload["invitor_userid"] == "sales1"
    assert joined[1].payload["join_scene"] == 3


def test_reconciling_the_member_list_emits_joined_and_left_exactly_once(tenant, events_of):
    # given
    group, _created = snapshot(tenant, [member("wmA"), member("wmB")], seen=1)
    # when: B left, C joined; the same snapshot arrives twice
    for _ in range(2):
        group, _created = snapshot(tenant, [member("wmA"), member("wmC", joined=3)], seen=4)
    # then
    assert active_userids(group) == ["wmA", "wmC"]
    assert [e.payload["userid"] for e in events_of("group.member_joined")] == ["wmA", "wmB", "wmC"]
    (left,) = events_of("group.member_left")
    assert left.payload["userid"] == "wmB"
    assert left.idempotency_key == f"group.member_left:{CHAT}:wmB:{int(at(0).timestamp())}"
    assert left.occurred_at == at(4)
    assert group.member_count == 2


def test_a_member_who_leaves_and_rejoins_is_two_memberships(tenant, events_of):
    group, _created = snapshot(tenant, [member("wmA")], seen=1)
    snapshot(tenant, [], seen=2)
    snapshot(tenant, [member("wmA", joined=3)], seen=4)
    assert [e.type for e in events_of("group.member_joined", "group.member_left")] == [
        "group.member_joined",
        "group.member_left",
        "group.member_joined",
    ]
    assert GroupMember.objects.for_tenant(tenant).filter(group=group).count() == 1


def test_an_older_snapshot_is_ignored(tenant, events_of):
    # given
    group, _created = snapshot(tenant, [member("wmA"), member("wmB")], seen=10, name="New")
    # when
    snapshot(tenant, [member("wmA")], seen=5, name="Old")
    # then
    group = Group.objects.for_tenant(tenant).get(pk=group.pk)
    assert (group.name, group.member_count) == ("New", 2)
    assert events_of("group.member_left", "group.updated") == []


def test_renaming_and_changing_the_owner_record_group_updated(tenant, sales_staff, events_of):
    # given
    new_owner = StaffFactory(tenant=tenant, wecom_userid="sales9")
    snapshot(tenant, None, seen=1)
    # when
    for _ in range(2):
        group, _created = snapshot(
            tenant,
            None,
            seen=2,
            name="新名字",
            owner_userid="sales9",
            admin_userids=[{"userid": "sales1"}],
        )
    # then
    assert (group.name, group.owner, group.admin_userids) == ("新名字", new_owner, ["sales1"])
    (updated,) = events_of("group.updated")
    assert updated.payload["changes"] == {
        "name": ["会员福利群", "新名字"],
        "owner_userid": ["sales1", "sales9"],
        "admin_userids": [[], ["sales1"]],
    }


def test_customer_members_are_linked_to_known_customers(tenant, sales_staff):
    # given
    known = CustomerFactory(tenant=tenant, external_userid="wmKNOWN", staff=sales_staff)
    # when
    group, _created = snapshot(
        tenant, [member("sales1", kind=1), member("wmKNOWN"), member("wmSTRANGER")]
    )
    # then
    rows = {m.userid: m for m in GroupMember.objects.for_tenant(tenant).filter(group=group)}
    assert rows["wmKNOWN"].customer == known
    assert rows["wmSTRANGER"].customer is None
    assert rows["sales1"].staff == sales_staff


def test_a_customer_added_later_is_linked_by_the_handler(tenant, sales_staff):
    # given
    group, _created = snapshot(tenant, [member("wmLATER")])
    customer = CustomerFactory(tenant=tenant, external_userid="wmLATER", staff=sales_staff)
    event = Event.objects.for_tenant(tenant).get(type="customer.added", customer_id=customer.pk)
    # when
    link_new_customer_to_group_memberships([event])  # batched: a list of events
    # then
    row = GroupMember.objects.for_tenant(tenant).get(group=group, userid="wmLATER")
    assert row.customer == customer


def test_an_unknown_owner_is_kept_by_userid(tenant):
    group, _created = snapshot(tenant, None, owner_userid="ghost")
    assert (group.owner, group.owner_userid) == (None, "ghost")


# --- member changes from callbacks -----------------------------------------------------------
def test_added_members_join_once(tenant, events_of):
    # given
    snapshot(tenant, [member("wmA")], seen=1)
    # when
    for _ in range(2):
        joined = services.add_group_members(tenant, CHAT, [member("wmB", joined=2)], at(2))
    # then
    assert joined == []  # the second call: already in the group
    assert [e.payload["userid"] for e in events_of("group.member_joined")] == ["wmA", "wmB"]
    assert Group.objects.for_tenant(tenant).get(chat_id=CHAT).member_count == 2


def test_a_bare_userid_joins_at_the_callback_time(tenant, events_of):
    snapshot(tenant, [], seen=1)
    (joined,) = services.add_group_members(tenant, CHAT, ["wmBARE"], at(7))
    assert (joined.join_time, joined.member_type) == (at(7), GroupMember.MemberType.CUSTOMER)


def test_removed_members_leave_once_with_their_quit_scene(tenant, events_of):
    # given
    snapshot(tenant, [member("wmA"), member("wmB")], seen=1)
    # when
    for _ in range(2):
        services.remove_group_members(tenant, CHAT, ["wmA"], quit_scene=1, seen_at=at(3))
    # then
    (left,) = events_of("group.member_left")
    assert (left.payload["userid"], left.payload["quit_scene"]) == ("wmA", 1)
    row = GroupMember.objects.for_tenant(tenant).get(userid="wmA")
    assert (row.status, row.left_at, row.quit_scene) == ("left", at(3), 1)
    assert Group.objects.for_tenant(tenant).get(chat_id=CHAT).member_count == 1


def test_a_late_leave_does_not_end_a_later_membership(tenant, events_of):
    # given: A left at 3 and rejoined at 5; the leave at 3 is delivered again
    snapshot(tenant, [member("wmA")], seen=1)
    services.remove_group_members(tenant, CHAT, ["wmA"], seen_at=at(3))
    services.add_group_members(tenant, CHAT, [member("wmA", joined=5)], at(5))
    # when
    services.remove_group_members(tenant, CHAT, ["wmA"], seen_at=at(3))
    # then
    assert GroupMember.objects.for_tenant(tenant).get(userid="wmA").status == "active"
    assert len(events_of("group.member_left")) == 1


def test_a_change_older_than_the_last_snapshot_is_ignored(tenant, events_of):
    snapshot(tenant, [member("wmA")], seen=10)
    assert services.add_group_members(tenant, CHAT, [member("wmB", joined=4)], at(4)) == []
    assert services.remove_group_members(tenant, CHAT, ["wmA"], seen_at=at(4)) == []
    assert active_userids(Group.objects.for_tenant(tenant).get(chat_id=CHAT)) == ["wmA"]


def test_a_snapshot_keeps_a_newer_join(tenant):
    # given: B joined at 6 (callback), the snapshot read at 5 does not list B yet
    snapshot(tenant, [member("wmA")], seen=1)
    services.add_group_members(tenant, CHAT, [member("wmB", joined=6)], at(6))
    # when
    group, _created = snapshot(tenant, [member("wmA")], seen=5)
    # then
    assert active_userids(group) == ["wmA", "wmB"]


def test_member_changes_of_an_unknown_group_are_refused(tenant):
    with pytest.raises(NotFound):
        services.add_group_members(tenant, "wrUNKNOWN", ["wmA"], at(1))


# --- dismissal ----------------------------------------------------------------------------------
def test_dismissing_a_group_is_final_and_recorded_once(tenant, events_of):
    # given
    snapshot(tenant, [member("wmA"), member("wmB")], seen=1)
    # when
    for _ in range(2):
        group = services.dismiss_group(tenant, CHAT, at(9))
    snapshot(tenant, [member("wmA")], seen=20, name="revived?")
    # then
    group = Group.objects.for_tenant(tenant).get(pk=group.pk)
    assert (group.status, group.dismissed_at, group.member_count, group.name) == (
        "dismissed",
        at(9),
        0,
        "会员福利群",
    )
    (dismissed,) = events_of("group.dismissed")
    assert dismissed.payload["member_count"] == 2
    assert events_of("group.member_left") == []
    assert active_userids(group) == []


def test_dismissing_an_unknown_group_does_nothing(tenant):
    assert services.dismiss_group(tenant, "wrUNKNOWN", at(1)) is None


def test_the_same_chat_id_in_two_tenants_is_two_groups(tenant, other_tenant):
    mine, _created = snapshot(tenant, [member("wmA")])
    theirs, _created = snapshot(other_tenant, [member("wmA")])
    assert mine.pk != theirs.pk
    assert Group.objects.for_tenant(tenant).get().pk == mine.pk
