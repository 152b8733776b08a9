"""CustomerTag ("the customer carries this tag", what segments query) stays exactly what the
friendships' corp tags (FollowTag) imply, plus the tags Siyu put on itself — through a full
sync, callbacks of every kind, deletions and a second sync."""

from __future__ import annotations

import pytest

from siyu.customers import services, tagging
from siyu.customers.models import CustomerTag, FollowTag
from siyu.customers.tests import support_tags_live
from siyu.customers.tests.support_tags import (
    carried,
    customer,
    implied_links,
    links,
    marked,
    tag_named,
)
from siyu.customers.tests.support_tags_live import settle
from siyu.tenancy.services import system_actor
from siyu.testing.factories import CustomerFactory, StaffFactory
from siyu.wecom.sync import sync_tenant

live_emulator = support_tags_live.live_emulator
live_world = support_tags_live.live_world


@pytest.mark.django_db(transaction=True)
def test_links_follow_the_friendships_through_sync_and_callbacks(live_world):
    tenant, control = live_world
    # given a corp with tags and customers, read by a full sync
    level = control.tag_change("create", group_name="等级", tags=["高", "低"])
    hobby = control.tag_change("create", group_name="兴趣", tags=["咖啡"])
    settle(control)
    high, low = level["tag_ids"]
    coffee = hobby["tag_ids"][0]
    control.bulk_customers(
        [
            {
                "external_userid": "wmc001",
                "follows": [
                    {"userid": "lili", "tags": [high]},
                    {"userid": "wang", "tags": [high, coffee]},
                ],
            },
            {"external_userid": "wmc002", "follows": [{"userid": "zhao", "tags": [low]}]},
            {"external_userid": "wmc003", "follows": [{"userid": "lili"}]},
        ]
    )
    sync_tenant(tenant, full=True)
    assert links(tenant) == implied_links(tenant) != set()
    first = customer(tenant, "wmc001")
    assert carried(tenant, first) == {"高", "咖啡"}

    # when staff edit tags in WeCom (edit_external_contact callbacks)
    control.edit_contact("lili", "wmc001", remove_tags=[high])  # wang still marks 高
    control.edit_contact("lili", "wmc003", add_tags=[low, coffee])
    settle(control)
    # then
    assert links(tenant) == implied_links(tenant)
    assert carried(tenant, first) == {"高", "咖啡"}
    assert carried(tenant, customer(tenant, "wmc003")) == {"低", "咖啡"}

    # when the only friendship marking a tag ends (the customer deletes wang)
    control.customer_deletes_staff("wmc001", "wang")
    control.staff_deletes_customer("zhao", "wmc002")
    settle(control)
    # then those tags leave the customers
    assert links(tenant) == implied_links(tenant)
    assert carried(tenant, first) == set()
    assert carried(tenant, customer(tenant, "wmc002")) == set()

    # when a customer comes back and a staff adds an existing customer, with tags
    control.add_contact("wang", external_userid="wmc001")
    control.edit_contact("wang", "wmc001", add_tags=[coffee])
    settle(control)
    assert carried(tenant, first) == {"咖啡"}
    assert links(tenant) == implied_links(tenant)

    # when a tag is deleted in WeCom (change_external_tag)
    control.tag_change("delete", id=coffee)
    settle(control)
    assert not CustomerTag.objects.for_tenant(tenant).filter(tag__wecom_tag_id=coffee).exists()
    assert not FollowTag.objects.for_tenant(tenant).filter(tag__wecom_tag_id=coffee).exists()
    assert links(tenant) == implied_links(tenant)

    # and a second full sync finds nothing to change
    before = links(tenant)
    sync_tenant(tenant, full=True)
    assert links(tenant) == implied_links(tenant) == before


@pytest.mark.django_db(transaction=True)
def test_tags_siyu_put_on_survive_syncs_and_callbacks(live_world):
    tenant, control = live_world
    level = control.tag_change("create", group_name="等级", tags=["高", "低"])
    settle(control)
    high, _low = level["tag_ids"]
    control.bulk_customers(
        [{"external_userid": "wms001", "follows": [{"userid": "lili", "tags": [high]}]}]
    )
    sync_tenant(tenant, full=True)
    actor = system_actor(tenant, channel="console")
    local = tagging.create_tag_group(actor, name="门店", tags=["到店"], local=True)
    someone = customer(tenant, "wms001")
    # when Siyu tags the customer (a local tag, and a WeCom tag mirrored by mark_tag)
    tagging.set_customer_tags(
        actor, someone, add=[tag_named(tenant, "到店"), tag_named(tenant, "低")]
    )
    # then the WeCom tag is marked on the friendship too
    assert marked(tenant, someone) == {"lili": {"高", "低"}}
    # and syncs and callbacks keep the local tag and stay consistent for the rest
    control.edit_contact("lili", "wms001", remove_tags=[high])
    settle(control)
    sync_tenant(tenant, full=True)
    assert carried(tenant, someone) == {"低", "到店"}
    siyu_only = {(someone.pk, tag_named(tenant, "到店").pk)}
    assert links(tenant) == implied_links(tenant) | siyu_only
    assert local.wecom_group_id == ""


def test_missing_links_are_repaired_from_the_friendships(tenant):
    # given friendships whose links are missing (data from before the table existed)
    staff = StaffFactory(tenant=tenant)
    someone = CustomerFactory(tenant=tenant, staff=staff)
    services.sync_corp_tags(
        tenant,
        [{"group_id": "g1", "group_name": "等级", "tag": [{"id": "t1", "name": "高"}]}],
    )
    follow = someone.follows.get()
    services.set_follow_tags(tenant, follow, ["t1"])
    CustomerTag.objects.for_tenant(tenant).all().delete()
    # when
    added = services.link_marked_customer_tags(tenant, chunk=1)
    # then
    assert added == 1 and links(tenant) == implied_links(tenant)
    assert services.link_marked_customer_tags(tenant) == 0
