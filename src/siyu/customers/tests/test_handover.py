"""Staff hand-over through WeCom's transfer APIs, against the emulator over HTTP: every
immediate errcode and every result (1 taken over, 2 waiting, 3 refused, 4 limit, 5 none)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.models import Event
from siyu.customers import handover as handovers
from siyu.customers import services
from siyu.customers.models import ChurnAlert, Customer, Follow, FollowTag, Handover, HandoverItem
from siyu.customers.services import sync_corp_tags
from siyu.engagement.models import StaffTask
from siyu.tenancy import services as tenancy
from siyu.testing.factories import CustomerFactory, StaffFactory, TenantFactory
from siyu.wecom import processors
from siyu.wecom.client import client_for
from siyu.wecom.emulator import EmulatorControl, EmulatorServer, World

CORP_ID = "wwhandover0000001"
SECRET = "handover-contact-secret"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
STAFF = [{"userid": "alice", "name": "Alice"}, {"userid": "bob", "name": "Bob"}]


@pytest.fixture
def emulator(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ho"}
    }
    cache.clear()
    with EmulatorServer(World(seed="handover"), callback_delivery=False) as server:
        settings.WECOM_API_BASE = f"{server.base_url}/cgi-bin"
        yield server
    cache.clear()


@pytest.fixture
def control(emulator):
    control = EmulatorControl(emulator.base_url, corp_id=CORP_ID)
    control.setup_corp(
        CORP_ID, contact_secret=SECRET, token="tok", encoding_aes_key=AES_KEY, staff=STAFF
    )
    yield control
    control.close()


@pytest.fixture
def brand(db, control):
    tenant = TenantFactory(slug="handover", wecom_corp_id=CORP_ID, wecom_contact_secret=SECRET)
    alice = StaffFactory(tenant=tenant, wecom_userid="alice", name="Alice", login=True)
    bob = StaffFactory(tenant=tenant, wecom_userid="bob", name="Bob", login=True)
    admin = StaffFactory(tenant=tenant, wecom_userid="admin", roles=["admin"], login=True)
    return {"tenant": tenant, "alice": alice, "bob": bob, "admin": admin}


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    def block():
        return django_capture_on_commit_callbacks(execute=True)

    return block


def customers_of_alice(brand, control, *names: str, tags: list[str] | None = None) -> list:
    """Customers who are Alice's friends both in WeCom and in Siyu."""
    control.bulk_customers(
        [
            {
                "external_userid": f"wm{name}",
                "name": name,
                "follows": [{"userid": "alice", "remark": f"{name} VIP", "tags": tags or []}],
            }
            for name in names
        ]
    )
    customers = []
    for name in names:
        customer = CustomerFactory(tenant=brand["tenant"], external_userid=f"wm{name}", name=name)
        services.upsert_follow(
            brand["tenant"],
            customer=customer,
            staff=brand["alice"],
            added_at=timezone.now() - timedelta(days=30),
            remark=f"{name} VIP",
        )
        customers.append(customer)
    return customers


def start(brand, on_commit, customers=None, *, by="admin", **fields: Any) -> Handover:
    actor = tenancy.actor_for_staff(brand[by])
    fields.setdefault("from_staff", brand["alice"])
    fields.setdefault("to_staff", brand["bob"])
    with on_commit():
        handover = handovers.start_handover(actor, customers=customers, **fields)
    handover.refresh_from_db()
    return handover


def statuses(handover) -> dict[str, tuple[str, int | None]]:
    return {
        item.customer.external_userid: (item.status, item.errcode)
        for item in handovers.items_of(handover)
    }


def friends(tenant, customer) -> dict[str, str]:
    return dict(
        Follow.objects.for_tenant(tenant)
        .filter(customer=customer)
        .values_list("staff__wecom_userid", "status")
    )


def test_an_in_service_hand_over_waits_then_moves_the_friendship(brand, control, on_commit):
    tenant = brand["tenant"]
    (anna,) = customers_of_alice(brand, control, "anna")
    # when the admin hands Anna over with a message
    handover = start(brand, on_commit, [anna], message="Bob 接手为您服务", reason="调岗")
    # then WeCom accepted it and the customer has 24 h to refuse
    assert (handover.kind, handover.status) == ("in_service", "submitted")
    assert statuses(handover) == {"wmanna": ("waiting", 0)}
    assert handovers.refresh_handover(handover) == {}  # WeCom: status 2, still waiting
    # when the customer does not refuse and WeCom completes the transfer
    control.complete_transfers(external_userid="wmanna")
    assert handovers.refresh_handover(handover) == {"succeeded": 1}
    # then Bob has Anna (with Alice's remark), Alice does not, and nobody calls it churn
    assert friends(tenant, anna) == {"alice": "deleted_by_staff", "bob": "active"}
    new = Follow.objects.for_tenant(tenant).get(customer=anna, staff=brand["bob"])
    assert (new.add_way, new.remark, new.oper_userid) == (202, "anna VIP", "alice")
    assert Customer.objects.for_tenant(tenant).get(pk=anna.pk).owner == brand["bob"]
    handover.refresh_from_db()
    assert handover.status == "finished" and handover.finished_at is not None
    item = HandoverItem.objects.for_tenant(tenant).get()
    assert item.takeover_at is not None
    assert ChurnAlert.objects.for_tenant(tenant).count() == 0
    types = list(Event.objects.for_tenant(tenant).order_by("id").values_list("type", flat=True))
    assert types.count("customer.handed_over") == 1
    assert types.count("handover.finished") == 1
    # and polling again changes nothing
    assert handovers.refresh_handover(handover) == {}


def test_the_takeover_friendship_keeps_the_corp_tags(brand, control, on_commit):
    tenant = brand["tenant"]
    created = control.tag_change("create", group_name="等级", tags=["金卡"])
    sync_corp_tags(tenant, client_for(tenant).get_corp_tag_list()["tag_group"])
    (gold,) = created["tag_ids"]
    (anna,) = customers_of_alice(brand, control, "anna", tags=[gold])
    follow = Follow.objects.for_tenant(tenant).get(customer=anna)
    services.set_follow_tags(tenant, follow, [gold])
    handover = start(brand, on_commit, [anna])
    control.complete_transfers()
    handovers.refresh_handover(handover)
    moved = FollowTag.objects.for_tenant(tenant).get()
    assert (moved.follow.staff, moved.tag.wecom_tag_id) == (brand["bob"], gold)


@pytest.mark.parametrize(
    ("reason", "status"),
    [("customer_refused", "refused"), ("customer_limit_exceed", "limit")],
)
def test_a_refused_or_full_transfer_keeps_the_friendship(brand, control, on_commit, reason, status):
    tenant = brand["tenant"]
    (anna,) = customers_of_alice(brand, control, "anna")
    handover = start(brand, on_commit, [anna])
    control.refuse_transfer(external_userid="wmanna", reason=reason)
    assert handovers.refresh_handover(handover) == {status: 1}
    assert statuses(handover) == {"wmanna": (status, 0)}
    assert friends(tenant, anna) == {"alice": "active"}
    handover.refresh_from_db()
    assert handover.status == "failed"
    assert Event.objects.for_tenant(tenant).filter(type="customer.handover_failed").count() == 1


def test_immediate_errcodes_are_recorded_per_customer(brand, control, on_commit):
    tenant = brand["tenant"]
    anna, bert, carl = customers_of_alice(brand, control, "anna", "bert", "carl")
    # Siyu knows two friendships WeCom does not: an unknown customer, another staff's customer
    ghost = CustomerFactory(tenant=tenant, external_userid="wmghost", staff=brand["alice"])
    control.bulk_customers([{"external_userid": "wmdora", "follows": [{"userid": "bob"}]}])
    dora = CustomerFactory(tenant=tenant, external_userid="wmdora", staff=brand["alice"])
    # Bert is already being transferred outside Siyu; Carl was transferred twice lately
    client_for(tenant).transfer_customer("alice", "bob", ["wmbert"])
    for handover_userid, takeover_userid in (("alice", "bob"), ("bob", "alice")):
        client_for(tenant).transfer_customer(handover_userid, takeover_userid, ["wmcarl"])
        control.complete_transfers(external_userid="wmcarl")
    # when
    handover = start(brand, on_commit, [anna, bert, carl, ghost, dora])
    # then
    assert statuses(handover) == {
        "wmanna": ("waiting", 0),
        "wmbert": ("failed", 40129),
        "wmcarl": ("failed", 40128),
        "wmghost": ("failed", 40096),
        "wmdora": ("failed", 40131),
    }
    details = dict(
        HandoverItem.objects.for_tenant(tenant)
        .filter(errcode=40096)
        .values_list("errcode", "detail")
    )
    assert details == {40096: "invalid external_userid"}
    assert handover.status == "submitted"


def test_a_departed_staffs_customers_go_through_the_resigned_transfer(brand, control, on_commit):
    tenant = brand["tenant"]
    anna, bert = customers_of_alice(brand, control, "anna", "bert")
    control.delete_staff("alice")
    tenancy.mark_staff_departed(brand["alice"], by=tenancy.system_actor(tenant))
    # when all of Alice's customers are handed over
    handover = start(brand, on_commit, all_customers=True, reason="离职")
    assert (handover.kind, handover.status) == ("resigned", "submitted")
    assert statuses(handover) == {"wmanna": ("waiting", 0), "wmbert": ("waiting", 0)}
    control.complete_transfers()
    assert handovers.refresh_handover(handover) == {"succeeded": 2}
    assert friends(tenant, anna) == {"alice": "deleted_by_staff", "bob": "active"}
    assert friends(tenant, bert) == {"alice": "deleted_by_staff", "bob": "active"}


def test_wecom_refusing_the_whole_call_fails_every_customer(brand, control, on_commit):
    # given Alice left according to Siyu, but WeCom still lists her (40097: not resigned)
    tenant = brand["tenant"]
    (anna,) = customers_of_alice(brand, control, "anna")
    tenancy.mark_staff_departed(brand["alice"], by=tenancy.system_actor(tenant))
    handover = start(brand, on_commit, [anna])
    assert statuses(handover) == {"wmanna": ("failed", 40097)}
    assert handover.status == "failed"


@pytest.mark.parametrize(
    ("wecom_status", "item_status"),
    [(1, "succeeded"), (2, "waiting"), (3, "refused"), (4, "limit"), (5, "failed")],
)
def test_every_transfer_result_status_maps_to_an_item_status(
    brand, control, on_commit, monkeypatch, wecom_status, item_status
):
    (anna,) = customers_of_alice(brand, control, "anna")
    handover = start(brand, on_commit, [anna])

    class Results:
        def iter_transfer_results(self, handover_userid, takeover_userid, *, resigned=False):
            assert (handover_userid, takeover_userid, resigned) == ("alice", "bob", False)
            return iter([{"external_userid": "wmanna", "status": wecom_status}])

    monkeypatch.setattr("siyu.wecom.client.client_for", lambda tenant, **kw: Results())
    handovers.refresh_handover(handover)
    assert statuses(handover)["wmanna"][0] == item_status


# --- callbacks settle items too, and nothing is applied twice ------------------------------
def callback(change_type: str, userid: str, external_userid: str, at: int, **fields: str):
    return {
        "Event": "change_external_contact",
        "ChangeType": change_type,
        "UserID": userid,
        "ExternalUserID": external_userid,
        "CreateTime": str(at),
        **fields,
    }


def test_the_delete_by_transfer_callback_settles_the_item_before_the_poll(
    brand, control, on_commit
):
    tenant = brand["tenant"]
    (anna,) = customers_of_alice(brand, control, "anna")
    handover = start(brand, on_commit, [anna])
    control.complete_transfers()
    now = int(Follow.objects.for_tenant(tenant).get().added_at.timestamp()) + 60
    # when WeCom's callbacks arrive (twice, as WeCom retries) before the poll
    deletion = callback("del_external_contact", "alice", "wmanna", now, Source="DELETE_BY_TRANSFER")
    with on_commit():
        assert processors.friendship_deleted(tenant, deletion) is True
        assert processors.friendship_deleted(tenant, deletion) is True
        processors.external_contact_added_or_edited(
            tenant, callback("add_external_contact", "bob", "wmanna", now)
        )
    # then the item is settled, and the poll that follows finds nothing left to do
    assert statuses(handover) == {"wmanna": ("succeeded", 0)}
    assert handovers.refresh_handover(handover) == {}
    assert friends(tenant, anna) == {"alice": "deleted_by_staff", "bob": "active"}
    types = list(Event.objects.for_tenant(tenant).values_list("type", flat=True))
    assert types.count("follow.added") == 2  # Alice's first add, then Bob's: once
    assert types.count("follow.deleted_by_staff") == 1
    assert types.count("customer.handed_over") == 1
    assert ChurnAlert.objects.for_tenant(tenant).count() == 0


def test_the_takeover_add_callback_alone_settles_a_resigned_transfer(brand, control, on_commit):
    tenant = brand["tenant"]
    (anna,) = customers_of_alice(brand, control, "anna")
    control.delete_staff("alice")
    tenancy.mark_staff_departed(brand["alice"], by=tenancy.system_actor(tenant))
    handover = start(brand, on_commit, [anna])
    control.complete_transfers()
    now = int(Follow.objects.for_tenant(tenant).get().added_at.timestamp()) + 60
    with on_commit():
        processors.external_contact_added_or_edited(
            tenant, callback("add_external_contact", "bob", "wmanna", now)
        )
    assert statuses(handover) == {"wmanna": ("succeeded", 0)}
    assert friends(tenant, anna) == {"alice": "deleted_by_staff", "bob": "active"}
    handover.refresh_from_db()
    assert handover.status == "finished"


@pytest.mark.parametrize(
    ("reason", "status"), [("customer_refused", "refused"), ("customer_limit_exceed", "limit")]
)
def test_the_transfer_fail_callback_marks_the_item(brand, control, on_commit, reason, status):
    tenant = brand["tenant"]
    (anna,) = customers_of_alice(brand, control, "anna")
    handover = start(brand, on_commit, [anna])
    message = callback("transfer_fail", "bob", "wmanna", 1_900_000_000, FailReason=reason)
    with on_commit():
        assert processors.transfer_failed(tenant, message) is True
    item = HandoverItem.objects.for_tenant(tenant).get()
    assert (item.status, item.detail) == (status, reason)
    assert Event.objects.for_tenant(tenant).filter(type="follow.transfer_failed").count() == 1
    handover.refresh_from_db()
    assert handover.status == "failed"


def test_a_transfer_made_outside_siyu_ends_the_friendship_without_churn(brand, control, on_commit):
    tenant = brand["tenant"]
    (anna,) = customers_of_alice(brand, control, "anna")
    now = int(Follow.objects.for_tenant(tenant).get().added_at.timestamp()) + 60
    deletion = callback("del_external_contact", "alice", "wmanna", now, Source="DELETE_BY_TRANSFER")
    with on_commit():
        processors.friendship_deleted(tenant, deletion)
    assert friends(tenant, anna) == {"alice": "deleted_by_staff"}
    assert ChurnAlert.objects.for_tenant(tenant).count() == 0


# --- who may hand over what ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"to_staff": "alice"}, InvalidInput, "another staff"),
        ({"message": "长" * 201}, InvalidInput, "at most 200"),
        ({"customers": []}, InvalidInput, "Choose the customers"),
        ({"all_customers": True}, InvalidInput, "not both"),
        ({"customers": ["stranger"]}, InvalidInput, "Not customers of Alice"),
    ],
)
def test_bad_hand_overs_are_refused(brand, control, on_commit, fields, error, message):
    (anna,) = customers_of_alice(brand, control, "anna")
    stranger = CustomerFactory(tenant=brand["tenant"], staff=brand["bob"])
    values = {"customers": [anna], **fields}
    if values.get("to_staff") == "alice":
        values["to_staff"] = brand["alice"]
    values["customers"] = [stranger if c == "stranger" else c for c in values["customers"]]
    from django.utils import translation

    with translation.override("en"), pytest.raises(error, match=message):
        start(brand, on_commit, **values)
    assert Handover.objects.for_tenant(brand["tenant"]).count() == 0


def test_a_departed_takeover_and_a_message_to_a_departed_staffs_customers_are_refused(
    brand, control, on_commit
):
    (anna,) = customers_of_alice(brand, control, "anna")
    actor = tenancy.system_actor(brand["tenant"])
    tenancy.mark_staff_departed(brand["bob"], by=actor)
    with pytest.raises(InvalidInput):
        start(brand, on_commit, [anna])
    tenancy.mark_staff_departed(brand["alice"], by=actor)
    with pytest.raises(InvalidInput):
        start(brand, on_commit, [anna], to_staff=brand["admin"], message="hi")


def test_a_customer_waiting_in_one_hand_over_is_not_handed_over_twice(brand, control, on_commit):
    anna, _bert = customers_of_alice(brand, control, "anna", "bert")
    start(brand, on_commit, [anna])
    with pytest.raises(Conflict):
        start(brand, on_commit, [anna])
    second = start(brand, on_commit, all_customers=True)
    assert list(statuses(second)) == ["wmbert"]


def test_a_sales_staff_sees_only_the_hand_overs_of_their_own_customers(brand, control, on_commit):
    (anna,) = customers_of_alice(brand, control, "anna")
    alices = start(brand, on_commit, [anna])
    alice, bob = (tenancy.actor_for_staff(brand[name]) for name in ("alice", "bob"))
    assert [h.pk for h in handovers.visible_handovers(alice)] == [alices.pk]
    assert list(handovers.visible_handovers(bob)) == []
    with pytest.raises(NotFound):
        handovers.handover_for(bob, alices.pk)


def test_a_lead_with_an_own_scope_hands_over_only_their_own_customers(brand, control, on_commit):
    # given Alice may hand over, but only sees her own customers
    tenant = brand["tenant"]
    system = tenancy.system_actor(tenant)
    tenancy.create_role(
        tenant,
        code="own-handover",
        name="Hands over own customers",
        permissions=["customers.handover_customer"],
        data_scope="own",
        by=system,
    )
    tenancy.update_staff(brand["alice"], role_codes=["sales", "own-handover"], by=system)
    (anna,) = customers_of_alice(brand, control, "anna")
    bobs = CustomerFactory(tenant=tenant, staff=brand["bob"])
    # then she hands over her customer, and Bob's is out of her reach
    mine = start(brand, on_commit, [anna], by="alice")
    assert mine.created_by == brand["alice"]
    with pytest.raises(NotFound):
        start(
            brand, on_commit, [bobs], by="alice", from_staff=brand["bob"], to_staff=brand["alice"]
        )


@pytest.mark.parametrize("role", ["sales", "service", "analyst"])
def test_roles_without_the_right_cannot_hand_over(brand, control, on_commit, role):
    (anna,) = customers_of_alice(brand, control, "anna")
    brand[role] = StaffFactory(tenant=brand["tenant"], roles=[role], wecom_userid=role)
    with pytest.raises(Forbidden):
        start(brand, on_commit, [anna], by=role)


def test_a_departure_asks_the_leader_to_hand_over(brand, control, on_commit):
    tenant = brand["tenant"]
    customers_of_alice(brand, control, "anna", "bert")
    actor = tenancy.system_actor(tenant)
    tenancy.set_direct_leaders(tenant, {"alice": "bob"}, by=actor)
    brand["alice"].refresh_from_db()
    with on_commit():
        tenancy.mark_staff_departed(brand["alice"], by=actor)
    task = StaffTask.objects.for_tenant(tenant).get()
    assert (task.staff, task.kind, task.source_key) == (
        brand["bob"],
        "handover",
        f"staff_departed:{brand['alice'].pk}",
    )
    assert "2" in task.title
