"""The tag library edited in Siyu reaches WeCom (the emulator) first, and only what WeCom
accepted is written locally."""

from __future__ import annotations

import pytest

from siyu.core.errors import Conflict, InvalidInput, NotFound
from siyu.core.models import AuditEntry, Event
from siyu.customers import tagging
from siyu.customers.models import CustomerTag, FollowTag, Tag, TagGroup
from siyu.customers.tests import support_tags
from siyu.customers.tests.support_tags import customer, tag_named, wecom_library
from siyu.tenancy.services import system_actor
from siyu.wecom.errors import WeComUnavailable
from siyu.wecom.sync import sync_tenant

# The fixtures of support_tags, by name (pytest finds them in this module).
brand = support_tags.brand
control = support_tags.control
emulator = support_tags.emulator
wecom_cache = support_tags.wecom_cache


@pytest.fixture
def actor(brand):
    return system_actor(brand, channel="console")


def groups(tenant) -> dict[str, dict[str, str]]:
    """``{group: {tag: wecom id}}`` of the live library in Siyu."""
    library: dict[str, dict[str, str]] = {}
    for group in TagGroup.objects.for_tenant(tenant).filter(deleted=False):
        library[group.name] = dict(
            Tag.objects.for_tenant(tenant)
            .filter(group=group, deleted=False)
            .values_list("name", "wecom_tag_id")
        )
    return library


# --- create -----------------------------------------------------------------------------------
def test_a_group_created_in_siyu_is_created_in_wecom_with_its_ids_stored(brand, emulator, actor):
    # when
    group = tagging.create_tag_group(
        actor, name="购买价位", order=5, tags=["9.9 体验课", {"name": "199 套餐", "order": 2}]
    )
    # then WeCom has it
    assert wecom_library(emulator) == {"购买价位": {"9.9 体验课": 0, "199 套餐": 2}}
    # and Siyu stored WeCom's ids
    assert group.wecom_group_id.startswith("et") and group.order == 5
    stored = groups(brand)["购买价位"]
    assert set(stored) == {"9.9 体验课", "199 套餐"}
    assert all(wecom_id.startswith("et") for wecom_id in stored.values())
    # and the edit is on record
    event = Event.objects.for_tenant(brand).get(type="tag_group.created")
    assert event.payload["name"] == "购买价位" and len(event.payload["tags"]) == 2
    assert AuditEntry.objects.for_tenant(brand).filter(action="tag_group.created").count() == 1


def test_a_tag_added_to_a_group_is_added_in_wecom(brand, emulator, actor):
    group = tagging.create_tag_group(actor, name="兴趣", tags=["咖啡"])
    # when
    tag = tagging.create_tag(actor, group, name="茶", order=3)
    # then
    assert wecom_library(emulator) == {"兴趣": {"咖啡": 0, "茶": 3}}
    assert tag.wecom_tag_id and tag.group == group


def test_a_local_group_and_its_tags_never_reach_wecom(brand, emulator, actor):
    group = tagging.create_tag_group(actor, name="线下活动", tags=["到店"], local=True)
    tagging.create_tag(actor, group, name="沙龙")
    tagging.update_tag(actor, tag_named(brand, "到店"), name="到店体验")
    assert wecom_library(emulator) == {}
    assert groups(brand) == {"线下活动": {"到店体验": "", "沙龙": ""}}


# --- rename, reorder --------------------------------------------------------------------------
def test_renaming_and_reordering_reach_wecom(brand, emulator, actor):
    group = tagging.create_tag_group(actor, name="等级", tags=["高", "低"])
    high, low = tag_named(brand, "高"), tag_named(brand, "低")
    # when
    tagging.update_tag_group(actor, group, name="客户等级")
    tagging.update_tag(actor, high, name="高意向")
    tagging.reorder(actor, [low, high])
    # then
    assert wecom_library(emulator) == {"客户等级": {"高意向": 1, "低": 2}}
    assert groups(brand) == {"客户等级": {"高意向": high.wecom_tag_id, "低": low.wecom_tag_id}}
    assert Event.objects.for_tenant(brand).filter(type="tag.updated").count() == 3


def test_an_unchanged_edit_calls_nobody_and_records_nothing(brand, emulator, actor, control):
    group = tagging.create_tag_group(actor, name="等级", tags=["高"])
    control.inject_fault("errcode", api="externalcontact/edit_corp_tag", errcode=-1)
    tagging.update_tag_group(actor, group, name="等级", order=0)
    assert not Event.objects.for_tenant(brand).filter(type="tag_group.updated").exists()


# --- delete -----------------------------------------------------------------------------------
def test_deleting_a_tag_takes_it_off_wecom_and_every_customer(brand, emulator, actor, control):
    # given a synced customer marked with the tag
    group = tagging.create_tag_group(actor, name="等级", tags=["高", "低"])
    high = tag_named(brand, "高")
    control.bulk_customers(
        [
            {
                "external_userid": "wmdel01",
                "follows": [{"userid": "lili", "tags": [high.wecom_tag_id]}],
            }
        ]
    )
    sync_tenant(brand, full=True)
    someone = customer(brand, "wmdel01")
    assert CustomerTag.objects.for_tenant(brand).filter(customer=someone, tag=high).exists()
    # when
    tagging.delete_tag(actor, high)
    # then
    assert wecom_library(emulator) == {"等级": {"低": 0}}
    high.refresh_from_db()
    assert high.deleted is True
    assert not FollowTag.objects.for_tenant(brand).filter(tag=high).exists()
    assert not CustomerTag.objects.for_tenant(brand).filter(tag=high).exists()
    group.refresh_from_db()
    assert group.deleted is False


def test_deleting_the_last_tag_deletes_the_group_as_wecom_does(brand, emulator, actor):
    group = tagging.create_tag_group(actor, name="临时", tags=["一次性"])
    tagging.delete_tag(actor, tag_named(brand, "一次性"))
    group.refresh_from_db()
    assert group.deleted is True and wecom_library(emulator) == {}
    assert Event.objects.for_tenant(brand).filter(type="tag_group.deleted").count() == 1


def test_deleting_a_group_deletes_it_in_wecom(brand, emulator, actor):
    group = tagging.create_tag_group(actor, name="来源", tags=["直播", "门店"])
    tagging.delete_tag_group(actor, group)
    assert wecom_library(emulator) == {}
    assert not Tag.objects.for_tenant(brand).filter(group=group, deleted=False).exists()


def test_deleting_what_wecom_already_deleted_still_deletes_it_here(brand, emulator, actor, control):
    group = tagging.create_tag_group(actor, name="来源", tags=["直播", "门店"])
    control.tag_change("delete", id=group.wecom_group_id)  # gone in WeCom, not synced yet
    tagging.delete_tag(actor, tag_named(brand, "直播"))
    assert not Tag.objects.for_tenant(brand).filter(name="直播", deleted=False).exists()


# --- refusals ---------------------------------------------------------------------------------
def test_a_name_siyu_knows_is_taken_is_refused_before_wecom_is_asked(brand, emulator, actor):
    tagging.create_tag_group(actor, name="等级", tags=["高"])
    with pytest.raises(Conflict) as refused:
        tagging.create_tag_group(actor, name="等级", tags=["低"])
    assert refused.value.code == "tag_name_taken"
    with pytest.raises(Conflict):
        tagging.create_tag(actor, TagGroup.objects.for_tenant(brand).get(), name="高")
    assert wecom_library(emulator) == {"等级": {"高": 0}}


def test_wecom_refusing_a_taken_name_writes_nothing_here(brand, emulator, actor, control):
    # given a tag WeCom has and Siyu does not know yet
    group = tagging.create_tag_group(actor, name="等级", tags=["高"])
    control.tag_change("create", group_id=group.wecom_group_id, tags=["低"])
    before = (Tag.objects.for_tenant(brand).count(), Event.objects.for_tenant(brand).count())
    # when
    with pytest.raises(Conflict) as refused:
        tagging.create_tag(actor, group, name="低")
    # then: WeCom's errcode 40071 as a plain message, nothing written
    assert refused.value.code == "tag_name_taken"
    assert refused.value.details["errcode"] == 40071
    assert "低" in refused.value.message
    assert (Tag.objects.for_tenant(brand).count(), Event.objects.for_tenant(brand).count()) == (
        before
    )


def test_the_corp_tag_limit_is_a_clear_refusal(brand, emulator, actor, control):
    control.settings(max_corp_tags=2)
    group = tagging.create_tag_group(actor, name="等级", tags=["高", "低"])
    with pytest.raises(Conflict) as refused:
        tagging.create_tag(actor, group, name="中")
    assert refused.value.code == "tag_limit" and refused.value.details["errcode"] == 40126
    assert Tag.objects.for_tenant(brand).count() == 2


def test_editing_a_tag_wecom_deleted_meanwhile_changes_nothing_here(
    brand, emulator, actor, control
):
    tagging.create_tag_group(actor, name="等级", tags=["高", "低"])
    high = tag_named(brand, "高")
    control.tag_change("delete", id=high.wecom_tag_id)
    with pytest.raises(NotFound) as refused:
        tagging.update_tag(actor, high, name="高意向")
    assert refused.value.code == "tag_not_in_wecom" and refused.value.details["errcode"] == 40068
    high.refresh_from_db()
    assert high.name == "高"


def test_wecom_being_down_writes_nothing_here(brand, emulator, actor, control):
    control.inject_fault("http", api="externalcontact/add_corp_tag", status=502)
    with pytest.raises(WeComUnavailable):
        tagging.create_tag_group(actor, name="等级", tags=["高"])
    assert not TagGroup.objects.for_tenant(brand).exists()


@pytest.mark.parametrize(
    ("name", "tags"),
    [("", ["高"]), ("x" * 31, ["高"]), ("等级", ["y" * 31]), ("等级", ["高", "高"]), ("等级", [])],
)
def test_invalid_names_are_refused_before_wecom_is_asked(brand, emulator, actor, name, tags):
    with pytest.raises(InvalidInput):
        tagging.create_tag_group(actor, name=name, tags=tags)
    assert wecom_library(emulator) == {} and not TagGroup.objects.for_tenant(brand).exists()


def test_an_unconfigured_tenant_is_told_to_configure_wecom(db, actor, brand):
    brand.wecom_contact_secret = ""
    brand.save()
    with pytest.raises(Conflict) as refused:
        tagging.create_tag_group(system_actor(brand), name="等级", tags=["高"])
    assert refused.value.code == "wecom_not_configured"
