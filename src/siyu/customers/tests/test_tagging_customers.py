"""Tagging a customer: the link, the timeline event, and ``mark_tag`` on each active
friendship in WeCom (the emulator), queued per friendship and idempotent."""

from __future__ import annotations

import pytest

from siyu.core.errors import Conflict, Forbidden, NotFound
from siyu.core.models import Event
from siyu.customers import tagging
from siyu.customers.models import CustomerTag, Follow
from siyu.customers.tests import support_tags
from siyu.customers.tests.support_tags import carried, customer, marked, tag_named, wecom_marks
from siyu.tenancy import services as tenancy
from siyu.tenancy.models import Staff
from siyu.testing.factories import StaffFactory
from siyu.wecom.errors import WeComBusy
from siyu.wecom.sync import sync_tenant

# The fixtures of support_tags, by name (pytest finds them in this module).
brand = support_tags.brand
control = support_tags.control
emulator = support_tags.emulator
wecom_cache = support_tags.wecom_cache


@pytest.fixture
def world(brand, control):
    """WeCom tags 等级/高 and 等级/低, a local group, and wm0001 befriended by lili and wang,
    wm0002 by zhao; synced into Siyu."""
    level = control.tag_change("create", group_name="等级", tags=["高", "低"])
    control.bulk_customers(
        [
            {
                "external_userid": "wm0001",
                "name": "甲",
                "follows": [{"userid": "lili"}, {"userid": "wang", "tags": [level["tag_ids"][1]]}],
            },
            {"external_userid": "wm0002", "name": "乙", "follows": [{"userid": "zhao"}]},
        ]
    )
    sync_tenant(brand, full=True)
    actor = tenancy.system_actor(brand, channel="console")
    tagging.create_tag_group(actor, name="门店", tags=["到店"], local=True)
    return {"actor": actor, "high": tag_named(brand, "高"), "low": tag_named(brand, "低")}


def test_tagging_links_records_and_marks_every_active_friendship(
    brand, emulator, world, django_capture_on_commit_callbacks
):
    # given
    someone, high = customer(brand, "wm0001"), world["high"]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        created = tagging.tag_customer(world["actor"], someone, high)
    # then: the customer carries it, with an event on their timeline
    assert created is True
    assert carried(brand, someone) == {"高", "低"}
    event = Event.objects.for_tenant(brand).get(type="customer.tagged", customer_id=someone.pk)
    assert event.payload["tag_id"] == high.pk and event.payload["via"] == "console"
    # and WeCom has it on both friendships, and so do the friendships here
    marks = wecom_marks(emulator, "wm0001")
    assert high.wecom_tag_id in marks["lili"] and high.wecom_tag_id in marks["wang"]
    assert marked(brand, someone) == {"lili": {"高"}, "wang": {"低", "高"}}
    changed = Event.objects.for_tenant(brand).filter(
        type="follow.tags_changed", customer_id=someone.pk, payload__by_siyu=True
    )
    assert changed.count() == 2


def test_tagging_twice_is_one_link_one_event_and_no_second_mark(
    brand, emulator, world, control, django_capture_on_commit_callbacks
):
    someone, high = customer(brand, "wm0001"), world["high"]
    with django_capture_on_commit_callbacks(execute=True):
        tagging.tag_customer(world["actor"], someone, high)
    # when WeCom would fail any further mark_tag, and the same tagging comes again
    control.inject_fault("errcode", api="externalcontact/mark_tag", errcode=40068)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        created = tagging.tag_customer(world["actor"], someone, high)
    # then nothing is queued, recorded or changed
    assert created is False and queued == []
    assert Event.objects.for_tenant(brand).filter(type="customer.tagged").count() == 1
    assert CustomerTag.objects.for_tenant(brand).filter(customer=someone, tag=high).count() == 1


def test_untagging_takes_the_tag_off_the_customer_and_off_wecom(
    brand, emulator, world, django_capture_on_commit_callbacks
):
    someone, low = customer(brand, "wm0001"), world["low"]  # wang marked 低 in WeCom
    with django_capture_on_commit_callbacks(execute=True):
        removed = tagging.untag_customer(world["actor"], someone, low)
    assert removed is True
    assert carried(brand, someone) == set()
    assert wecom_marks(emulator, "wm0001") == {"lili": set(), "wang": set()}
    assert marked(brand, someone) == {"lili": set(), "wang": set()}
    assert Event.objects.for_tenant(brand).filter(type="customer.untagged").count() == 1


def test_setting_a_customers_tags_adds_and_removes_the_difference(
    brand, emulator, world, django_capture_on_commit_callbacks
):
    someone = customer(brand, "wm0001")
    local = tag_named(brand, "到店")
    with django_capture_on_commit_callbacks(execute=True):
        result = tagging.set_customer_tags(world["actor"], someone, [world["high"], local])
    assert (result.tagged, result.untagged) == (2, 1)
    assert carried(brand, someone) == {"高", "到店"}
    high_id = world["high"].wecom_tag_id
    assert wecom_marks(emulator, "wm0001") == {"lili": {high_id}, "wang": {high_id}}


def test_a_local_tag_is_never_sent_to_wecom(
    brand, emulator, world, django_capture_on_commit_callbacks
):
    someone = customer(brand, "wm0002")
    with django_capture_on_commit_callbacks(execute=True):
        result = tagging.set_customer_tags(world["actor"], someone, add=[tag_named(brand, "到店")])
    assert result.mirrors == 0
    assert carried(brand, someone) == {"到店"}
    assert wecom_marks(emulator, "wm0002") == {"zhao": set()}


def test_a_friendship_whose_staff_left_is_skipped(
    brand, emulator, world, django_capture_on_commit_callbacks
):
    wang = Staff.objects.for_tenant(brand).get(wecom_userid="wang")
    tenancy.mark_staff_departed(wang, by=world["actor"])
    someone = customer(brand, "wm0001")
    with django_capture_on_commit_callbacks(execute=True):
        tagging.tag_customer(world["actor"], someone, world["high"])
    high_id = world["high"].wecom_tag_id
    marks = wecom_marks(emulator, "wm0001")
    assert high_id in marks["lili"] and high_id not in marks["wang"]


def test_an_ended_friendship_is_not_marked(
    brand, emulator, world, control, django_capture_on_commit_callbacks
):
    control.customer_deletes_staff("wm0001", "wang")
    sync_tenant(brand, full=True)
    someone = customer(brand, "wm0001")
    with django_capture_on_commit_callbacks(execute=True):
        result = tagging.set_customer_tags(world["actor"], someone, add=[world["high"]])
    assert result.mirrors == 1
    assert wecom_marks(emulator, "wm0001") == {"lili": {world["high"].wecom_tag_id}}


def test_a_transient_wecom_error_is_retried_and_then_succeeds(brand, emulator, world, control):
    # given a tagging whose mirror has not run yet
    someone, high = customer(brand, "wm0002"), world["high"]
    tagging.tag_customer(world["actor"], someone, high)  # on_commit not run: nothing sent
    follow = Follow.objects.for_tenant(brand).get(customer=someone)
    control.inject_fault("errcode", api="externalcontact/mark_tag", errcode=-1, count=10)
    # when WeCom is busy, the task raises so that the queue retries it
    with pytest.raises(WeComBusy):
        tagging.mirror_follow_tags(brand.pk, follow.pk, [high.pk])
    assert wecom_marks(emulator, "wm0002") == {"zhao": set()}
    # and the retry, once WeCom is back, marks the tag once
    control.clear_faults()
    assert tagging.mirror_follow_tags(brand.pk, follow.pk, [high.pk]) == "marked"
    assert tagging.mirror_follow_tags(brand.pk, follow.pk, [high.pk]) == "unchanged"
    assert wecom_marks(emulator, "wm0002") == {"zhao": {high.wecom_tag_id}}


def test_a_late_mirror_follows_the_customers_current_tags(brand, emulator, world):
    # given tagged then untagged before any mirror ran
    someone, high = customer(brand, "wm0002"), world["high"]
    tagging.tag_customer(world["actor"], someone, high)
    tagging.untag_customer(world["actor"], someone, high)
    follow = Follow.objects.for_tenant(brand).get(customer=someone)
    # when the add's task arrives late, it sends nothing
    assert tagging.mirror_follow_tags(brand.pk, follow.pk, [high.pk]) == "unchanged"
    assert wecom_marks(emulator, "wm0002") == {"zhao": set()}


def test_wecom_refusing_for_good_is_logged_and_not_retried(brand, emulator, world, control):
    someone, high = customer(brand, "wm0002"), world["high"]
    tagging.tag_customer(world["actor"], someone, high)
    follow = Follow.objects.for_tenant(brand).get(customer=someone)
    control.inject_fault("errcode", api="externalcontact/mark_tag", errcode=84061)
    assert tagging.mirror_follow_tags(brand.pk, follow.pk, [high.pk]) == "refused"
    assert marked(brand, someone) == {"zhao": set()}
    assert carried(brand, someone) == {"高"}  # Siyu's tag stays: the customer carries it


# --- who may tag whom -------------------------------------------------------------------------
def test_a_sales_staff_cannot_tag_another_staffs_customer(brand, world):
    lili = Staff.objects.for_tenant(brand).get(wecom_userid="lili")  # synced staff: sales
    sales = tenancy.actor_for_staff(lili)
    theirs, not_theirs = customer(brand, "wm0001"), customer(brand, "wm0002")
    assert tagging.tag_customer(sales, theirs, world["high"]) is True
    with pytest.raises(NotFound):
        tagging.tag_customer(sales, not_theirs, world["high"])
    assert carried(brand, not_theirs) == set()


def test_a_role_without_the_right_cannot_tag(brand, world):
    content = StaffFactory(tenant=brand, roles=["content"])
    with pytest.raises(Forbidden):
        tagging.tag_customer(
            tenancy.actor_for_staff(content), customer(brand, "wm0001"), world["high"]
        )


def test_deleted_tags_and_merged_customers_are_refused(brand, world):
    actor = world["actor"]
    tagging.delete_tag(actor, world["low"])
    with pytest.raises(NotFound):
        tagging.tag_customer(actor, customer(brand, "wm0001"), world["low"])
    merged = customer(brand, "wm0002")
    type(merged).objects.for_tenant(brand).filter(pk=merged.pk).update(
        merged_into=customer(brand, "wm0001")
    )
    with pytest.raises(Conflict):
        tagging.tag_customer(actor, merged, world["high"])
