"""Tags changed in WeCom reach Siyu through callbacks; echoes of Siyu's own edits and
redelivered callbacks apply once. Everything goes through the emulator and the real,
encrypted callback endpoint of a live server."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from siyu.core.models import Event
from siyu.customers import tagging
from siyu.customers.models import CustomerTag, FollowTag, Tag, TagGroup
from siyu.customers.tests import support_tags_live
from siyu.customers.tests.support_tags import carried, customer, marked, tag_named
from siyu.customers.tests.support_tags_live import settle
from siyu.tenancy.services import system_actor
from siyu.wecom.client import WeComClient
from siyu.wecom.models import CallbackInbox
from siyu.wecom.processors import corp_tags_changed
from siyu.wecom.sync import sync_tenant

pytestmark = pytest.mark.django_db(transaction=True)

live_emulator = support_tags_live.live_emulator
live_world = support_tags_live.live_world


def library(tenant) -> dict[str, set[str]]:
    return {
        group.name: set(
            Tag.objects.for_tenant(tenant)
            .filter(group=group, deleted=False)
            .values_list("name", flat=True)
        )
        for group in TagGroup.objects.for_tenant(tenant).filter(deleted=False)
    }


def count(tenant, event_type: str) -> int:
    return Event.objects.for_tenant(tenant).filter(type=event_type).count()


def test_tag_library_edits_in_wecom_reach_siyu(live_world):
    tenant, control = live_world
    # when an administrator edits the tag library in WeCom
    created = control.tag_change("create", group_name="兴趣", tags=["咖啡", "茶"])
    settle(control)
    assert library(tenant) == {"兴趣": {"咖啡", "茶"}}
    coffee, tea = created["tag_ids"]
    control.tag_change("update", id=coffee, name="精品咖啡")
    control.tag_change("update", id=created["group_id"], name="爱好")
    control.tag_change("delete", id=tea)
    settle(control)
    # then
    assert library(tenant) == {"爱好": {"精品咖啡"}}
    assert Tag.objects.for_tenant(tenant).get(wecom_tag_id=tea).deleted is True


def test_a_staff_marking_a_tag_in_wecom_tags_the_customer(live_world):
    tenant, control = live_world
    created = control.tag_change("create", group_name="等级", tags=["高"])
    control.bulk_customers([{"external_userid": "wmcb01", "follows": [{"userid": "lili"}]}])
    settle(control)
    sync_tenant(tenant, full=True)
    # when
    control.advance_clock(2)
    control.edit_contact("lili", "wmcb01", add_tags=created["tag_ids"])
    settle(control)
    # then
    assert carried(tenant, customer(tenant, "wmcb01")) == {"高"}


def test_echoes_of_siyus_own_edits_apply_once(live_world):
    tenant, control = live_world
    control.settings(echo_api_changes=1)  # WeCom sends none; the emulator echoes every edit
    control.bulk_customers([{"external_userid": "wmecho", "follows": [{"userid": "lili"}]}])
    sync_tenant(tenant, full=True)
    actor = system_actor(tenant, channel="console")
    # when Siyu edits the library and tags a customer, and WeCom echoes each edit back
    group = tagging.create_tag_group(actor, name="等级", tags=["高", "低"])
    tagging.update_tag(actor, tag_named(tenant, "高"), name="高意向")
    tagging.create_tag(actor, group, name="中")
    someone = customer(tenant, "wmecho")
    tagging.tag_customer(actor, someone, tag_named(tenant, "中"))
    tagging.delete_tag(actor, tag_named(tenant, "低"))
    settle(control)
    # then the echoes arrived and were processed, and changed nothing
    echoes = CallbackInbox.objects.for_tenant(tenant).filter(
        event__in=["change_external_tag", "change_external_contact"]
    )
    assert echoes.filter(change_type__in=["create", "update", "delete"]).count() == 4
    assert echoes.filter(change_type="edit_external_contact").count() == 1
    assert library(tenant) == {"等级": {"高意向", "中"}}
    assert TagGroup.objects.for_tenant(tenant).count() == 1
    assert Tag.objects.for_tenant(tenant).count() == 3  # 低 kept as deleted
    # each echo re-read WeCom only after Siyu's own write committed: nothing to reconcile
    assert count(tenant, "tag.synced") == 0
    assert carried(tenant, someone) == {"中"}
    assert marked(tenant, someone) == {"lili": {"中"}}
    assert count(tenant, "customer.tagged") == 1
    assert count(tenant, "follow.tags_changed") == 1  # Siyu's own mark; the echo added none


def test_a_redelivered_callback_applies_once(live_world):
    tenant, control = live_world
    created = control.tag_change("create", group_name="等级", tags=["高", "低"])
    control.bulk_customers([{"external_userid": "wmdup", "follows": [{"userid": "wang"}]}])
    settle(control)
    sync_tenant(tenant, full=True)
    control.advance_clock(2)
    # when WeCom delivers the edit's callback three times
    control.callback_fault("duplicate", count=1, copies=3)
    control.edit_contact("wang", "wmdup", add_tags=created["tag_ids"])
    settle(control)
    # then
    someone = customer(tenant, "wmdup")
    assert carried(tenant, someone) == {"高", "低"}
    assert CustomerTag.objects.for_tenant(tenant).filter(customer=someone).count() == 2
    assert FollowTag.objects.for_tenant(tenant).filter(follow__customer=someone).count() == 2
    changed = Event.objects.for_tenant(tenant).filter(
        type="follow.tags_changed", customer_id=someone.pk
    )
    assert changed.count() == 1
    assert CallbackInbox.objects.for_tenant(tenant).filter(deliveries__gt=1).exists()


def test_a_library_read_in_flight_cannot_undo_a_delete_that_overtakes_it(live_world, monkeypatch):
    """The race CI once caught: an echo's processor reads WeCom's tag list, Siyu deletes a
    tag meanwhile, and the older list, written last, brought the tag back."""
    tenant, _control = live_world
    actor = system_actor(tenant, channel="console")
    tagging.create_tag_group(actor, name="等级", tags=["高", "低"])
    read, deleted = threading.Event(), threading.Event()
    real_read = WeComClient.get_corp_tag_list

    def slow_read(self, *args, **kwargs):
        answer = real_read(self, *args, **kwargs)
        read.set()
        deleted.wait(timeout=1.0)  # give the delete every chance to overtake this read
        return answer

    monkeypatch.setattr(WeComClient, "get_corp_tag_list", slow_read)

    def process_an_echo():
        try:
            corp_tags_changed(tenant, {"CreateTime": "1795451539"})
        finally:
            connection.close()

    echo = threading.Thread(target=process_an_echo)
    echo.start()
    assert read.wait(timeout=10)
    # when Siyu deletes a tag while that read is in flight
    tagging.delete_tag(actor, tag_named(tenant, "低"))
    deleted.set()
    echo.join(timeout=20)
    # then the delete waited for the read to be written, and stands
    assert not echo.is_alive()
    assert library(tenant) == {"等级": {"高"}}
