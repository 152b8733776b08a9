"""Every callback type, end to end: emulator → encrypted callback → endpoint → Siyu data.

The platform reaches the emulator only as it would reach WeCom: through the real client at
``WECOM_API_BASE`` and the real callback endpoint, served by ``live_server``.
"""

from __future__ import annotations

import pytest

from siyu.community.models import Group, GroupMember
from siyu.core.models import Event
from siyu.customers.models import Customer, Follow, Tag
from siyu.tenancy.models import Staff
from siyu.testing.factories import TenantFactory
from siyu.wecom.client import client_for
from siyu.wecom.emulator.server import EmulatorControl, EmulatorServer
from siyu.wecom.models import CallbackInbox
from siyu.wecom.routing import _owners, owns_state_prefix

CORP_ID = "wwroundtrip000001"
SECRET = "roundtrip-contact-secret"
TOKEN = "RoundTripToken42"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
STAFF = [{"userid": "lili", "name": "李莉"}, {"userid": "wang", "name": "王强"}]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def emulator():
    with EmulatorServer(callback_retry_delay=0.2) as server:
        yield server


@pytest.fixture
def world(emulator, live_server, settings):
    """A corp in the emulator whose callbacks reach this test's live Siyu server."""
    settings.WECOM_API_BASE = f"{emulator.base_url}/cgi-bin"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rt"}
    }
    tenant = TenantFactory(
        slug="roundtrip",
        wecom_corp_id=CORP_ID,
        wecom_contact_secret=SECRET,
        wecom_callback_token=TOKEN,
        wecom_callback_aes_key=AES_KEY,
    )
    control = EmulatorControl(emulator.base_url, corp_id=CORP_ID)
    control.setup_corp(
        CORP_ID,
        contact_secret=SECRET,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        callback_url=f"{live_server.url}/wecom/roundtrip/callback",
        staff=STAFF,
    )
    assert control.verify_callback()["ok"] is True  # WeCom's URL check on save
    yield tenant, control
    control.close()


def settle(control):
    assert control.wait_callbacks(timeout=20)


def events(tenant, event_type):
    return Event.objects.for_tenant(tenant).filter(type=event_type)


@pytest.fixture
def state_owner():
    received = []
    owns_state_prefix("rt")(received.append)
    yield received
    _owners.pop("rt", None)


def test_a_scan_adds_customer_and_follow_and_hands_the_welcome_code_to_the_state_owner(
    world, state_owner
):
    tenant, control = world
    way = client_for(tenant).add_contact_way(1, 2, user=["lili"], state="rt-poster-7")
    # when a passer-by scans the QR code
    scan = control.scan(way["config_id"], customer={"name": "小红", "gender": 2})
    settle(control)
    # then
    customer = Customer.objects.for_tenant(tenant).get(external_userid=scan["external_userid"])
    assert customer.name == "小红" and customer.gender == 2
    follow = Follow.objects.for_tenant(tenant).get(customer=customer)
    assert follow.staff.wecom_userid == "lili"
    assert follow.state == "rt-poster-7" and follow.status == Follow.Status.ACTIVE
    assert events(tenant, "customer.added").count() == 1
    assert [(a.state, a.welcome_code) for a in state_owner] == [
        ("rt-poster-7", scan["welcome_code"])
    ]
    assert CallbackInbox.objects.for_tenant(tenant).get().status == "processed"


def test_edit_and_both_kinds_of_deletion(world):
    tenant, control = world
    added = control.add_contact("lili", customer={"name": "老客户"})
    control.add_contact("wang", external_userid=added["external_userid"])
    settle(control)
    customer = Customer.objects.for_tenant(tenant).get()
    assert Follow.objects.for_tenant(tenant).filter(customer=customer).count() == 2

    control.edit_contact("lili", added["external_userid"], remark="VIP 老客户")
    settle(control)
    follow = Follow.objects.for_tenant(tenant).get(customer=customer, staff__wecom_userid="lili")
    assert follow.remark == "VIP 老客户"

    control.customer_deletes_staff(added["external_userid"], "lili")
    control.staff_deletes_customer("wang", added["external_userid"])
    settle(control)
    statuses = dict(Follow.objects.for_tenant(tenant).values_list("staff__wecom_userid", "status"))
    assert statuses == {"lili": "deleted_by_customer", "wang": "deleted_by_staff"}
    customer.refresh_from_db()
    assert customer.status == Customer.Status.LOST
    assert events(tenant, "follow.deleted_by_customer").count() == 1
    assert events(tenant, "follow.deleted_by_staff").count() == 1


def test_group_life_cycle(world):
    tenant, control = world
    member = control.add_contact("lili", customer={"name": "群友"})["external_userid"]
    chat_id = control.create_group("lili", "新品体验群", members=["wang"])
    settle(control)
    control.join_group(chat_id=chat_id, member=member, scene="qr")
    settle(control)
    group = Group.objects.for_tenant(tenant).get(chat_id=chat_id)
    assert group.name == "新品体验群" and group.owner.wecom_userid == "lili"
    joined = GroupMember.objects.for_tenant(tenant).get(group=group, userid=member)
    assert joined.customer.external_userid == member and joined.status == "active"

    control.leave_group(chat_id, member)
    settle(control)
    joined.refresh_from_db()
    assert joined.status == "left"
    assert events(tenant, "group.member_left").count() == 1

    control.dismiss_group(chat_id)
    settle(control)
    group.refresh_from_db()
    assert group.status == Group.Status.DISMISSED


def test_corp_tags_and_directory_changes(world):
    tenant, control = world
    control.tag_change("create", group_name="兴趣", tags=["咖啡", "茶"])
    control.add_staff("zhao", "赵六")
    settle(control)
    assert sorted(Tag.objects.for_tenant(tenant).values_list("name", flat=True)) == ["咖啡", "茶"]
    assert Staff.objects.for_tenant(tenant).get(wecom_userid="zhao").name == "赵六"
    control.delete_staff("zhao")
    settle(control)
    assert Staff.objects.for_tenant(tenant).get(wecom_userid="zhao").status == "departed"


def test_duplicated_and_reordered_callbacks_apply_once(world):
    tenant, control = world
    control.callback_fault("duplicate", count=5, copies=3)
    control.callback_fault("reorder", count=4, window=4)
    first = control.add_contact("lili", customer={"name": "甲"})["external_userid"]
    control.add_contact("wang", external_userid=first)
    control.customer_deletes_staff(first, "wang")
    second = control.add_contact("wang", customer={"name": "乙"})["external_userid"]
    settle(control)
    statuses = dict(
        Follow.objects.for_tenant(tenant)
        .values_list("customer__external_userid", "status")
        .filter(staff__wecom_userid="wang")
    )
    assert statuses == {first: "deleted_by_customer", second: "active"}
    assert events(tenant, "customer.added").count() == 2
    assert events(tenant, "follow.added").count() == 3
    assert CallbackInbox.objects.for_tenant(tenant).filter(deliveries__gt=1).exists()
