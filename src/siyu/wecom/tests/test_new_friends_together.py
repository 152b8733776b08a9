"""A burst of ``add_external_contact`` callbacks is applied together, and leaves exactly
what the same callbacks leave one by one: customers, friendships, tags and events.

Two tenants on two emulator corps with the same customers: one processes the burst with
``process_many`` (together), the other row by row with ``process``.
"""

from __future__ import annotations

import time

import pytest

from siyu.core.models import Event
from siyu.customers import services as customers
from siyu.customers.models import Customer, Follow, FollowTag
from siyu.testing.factories import TenantFactory
from siyu.wecom import processors, tasks
from siyu.wecom.callbacks import store_callback
from siyu.wecom.client import client_for
from siyu.wecom.emulator.server import EmulatorControl, EmulatorServer
from siyu.wecom.models import CallbackInbox
from siyu.wecom.processing import process, process_many

AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
STAFF = [{"userid": "lili", "name": "李莉"}, {"userid": "wang", "name": "王强"}]
NOW = int(time.time())

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def emulator(settings):
    with EmulatorServer() as server:
        settings.WECOM_API_BASE = f"{server.base_url}/cgi-bin"
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        yield server


@pytest.fixture(autouse=True)
def _no_automatic_processing(monkeypatch):
    """Rows are processed by the test itself, together or one by one."""
    monkeypatch.setattr(tasks, "process_tenant_callbacks", lambda tenant_id: None)


def corp(emulator, slug: str):
    corp_id = f"ww{slug}0000000001"
    tenant = TenantFactory(
        slug=slug,
        wecom_corp_id=corp_id,
        wecom_contact_secret="secret",
        wecom_callback_token="token",
        wecom_callback_aes_key=AES_KEY,
    )
    control = EmulatorControl(emulator.base_url, corp_id=corp_id)
    control.setup_corp(
        corp_id, contact_secret="secret", token="token", encoding_aes_key=AES_KEY, staff=STAFF
    )
    coffee = control.tag_change("create", group_name="兴趣", tags=["咖啡"])["tag_ids"][0]
    tag_groups = client_for(tenant).get_corp_tag_list()["tag_group"]
    customers.sync_corp_tags(tenant, tag_groups)
    # a customer Siyu knew before the burst, whom wang now adds too
    control.bulk_customers(
        [
            {
                "external_userid": "wmknown",
                "name": "老客",
                "unionid": "union-known",
                "follows": [
                    {"userid": "lili", "createtime": NOW - 100},
                    {"userid": "wang", "createtime": NOW - 50},  # its add comes in the burst
                ],
            }
        ]
    )
    store_and_process_alone(tenant, [add("lili", "wmknown", NOW - 100)])
    control.bulk_customers(
        [
            {
                "external_userid": f"wmnew{n}",
                "name": f"新客{n}",
                "unionid": f"union-{n}",
                "follows": [
                    {
                        "userid": "lili",
                        "state": "poster-7" if n % 2 else "",
                        "tags": [coffee] if n == 1 else [],
                        "createtime": NOW - 10 + n,
                    },
                    *([{"userid": "wang", "createtime": NOW - 5}] if n == 2 else []),
                ],
            }
            for n in range(1, 6)
        ]
    )
    control.bulk_customers(
        [
            {
                "external_userid": "wmgone",
                "name": "匆匆",
                "unionid": "union-gone",
                "follows": [{"userid": "wang"}],
            }
        ]
    )
    return tenant, control


def add(userid: str, external_userid: str, create_time: int, state: str = "") -> str:
    return (
        "<xml><ToUserName><![CDATA[corp]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]>"
        "</MsgType><Event><![CDATA[change_external_contact]]></Event>"
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
        f"<UserID><![CDATA[{userid}]]></UserID>"
        f"<ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID>"
        f"<State><![CDATA[{state}]]></State></xml>"
    )


BURST = [
    *[add("lili", f"wmnew{n}", NOW - 10 + n, "poster-7" if n % 2 else "") for n in range(1, 6)],
    add("wang", "wmnew2", NOW - 4),  # the same new customer, a second staff, same burst
    add("wang", "wmknown", NOW - 3),  # a customer known before
    add("lili", "wmgone", NOW - 2),  # lili was deleted again before Siyu asked WeCom
    add("lili", "wmvanished", NOW - 2),  # WeCom no longer knows the contact at all
    add("", "wmnobody", NOW - 1),  # no staff: nothing to apply
]


def store(tenant, plaintexts: list[str]) -> list[int]:
    return [store_callback(tenant, text).pk for text in plaintexts]


def store_and_process_alone(tenant, plaintexts: list[str]) -> None:
    for inbox_id in store(tenant, plaintexts):
        process(inbox_id)


def comparable_key(event: Event) -> str:
    """The idempotency key, less the digest of WeCom tag ids (each corp numbers its own)."""
    if event.type == "follow.tags_changed":
        return event.idempotency_key.rsplit(":", 1)[0]
    return event.idempotency_key


def snapshot(tenant) -> dict:
    """Everything the burst wrote, without ids."""
    people = {
        c.external_userid: (c.name, c.unionid, c.status, c.owner.wecom_userid if c.owner else "")
        for c in Customer.objects.for_tenant(tenant).select_related("owner")
    }
    friendships = sorted(
        (f.customer.external_userid, f.staff.wecom_userid, f.status, f.state, f.added_at)
        for f in Follow.objects.for_tenant(tenant).select_related("customer", "staff")
    )
    tags = sorted(
        (link.follow.customer.external_userid, link.tag.name)
        for link in FollowTag.objects.for_tenant(tenant).select_related("follow__customer", "tag")
    )
    events = sorted(
        (e.type, comparable_key(e), e.staff.wecom_userid if e.staff else "", e.occurred_at)
        for e in Event.objects.for_tenant(tenant).select_related("staff")
        if e.type.startswith(("customer.", "follow."))
    )
    return {"people": people, "friendships": friendships, "tags": tags, "events": events}


def test_a_burst_applied_together_equals_the_same_burst_one_by_one(emulator, monkeypatch):
    together, _ = corp(emulator, "together")
    alone, _ = corp(emulator, "alone")
    ids = store(together, BURST)
    written_together = []
    real = processors._write_new_friends

    def spy(tenant, fetched):
        written_together.append([message["ExternalUserID"] for _i, message, *_ in fetched])
        return real(tenant, fetched)

    monkeypatch.setattr(processors, "_write_new_friends", spy)
    statuses = process_many(ids)
    # one write for every add WeCom still shows; the two others went alone
    assert written_together == [[*(f"wmnew{n}" for n in range(1, 6)), "wmnew2", "wmknown"]]
    store_and_process_alone(alone, BURST)
    assert snapshot(together) == snapshot(alone)
    expected = ["processed"] * 8 + ["ignored"] * 2
    assert [statuses[pk] for pk in ids] == expected
    rows = CallbackInbox.objects.for_tenant(together)
    assert [rows.get(pk=pk).status for pk in ids] == expected
    # the burst's effects, spelled out once
    facts = snapshot(together)
    assert len(facts["people"]) == 7  # known, five new, the one lili lost within seconds
    assert facts["people"]["wmnew2"][3] == "lili"  # the earliest friendship owns
    assert ("wmnew1", "咖啡") in facts["tags"]
    assert ("wmgone", "lili") in {f[:2] for f in facts["friendships"]}  # recorded as it was
    assert [e[0] for e in facts["events"]].count("customer.added") == 7


def test_a_burst_that_fails_together_is_processed_one_by_one(emulator, monkeypatch):
    tenant, _ = corp(emulator, "fallback")
    reference, _ = corp(emulator, "reference")

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(processors, "_write_new_friends", broken)
    ids = store(tenant, BURST)
    statuses = process_many(ids)
    store_and_process_alone(reference, BURST)
    assert [statuses[pk] for pk in ids] == ["processed"] * 8 + ["ignored"] * 2
    assert snapshot(tenant) == snapshot(reference)


def test_rows_already_done_are_skipped_and_other_kinds_keep_their_place(emulator):
    tenant, control = corp(emulator, "mixed")
    first = store(tenant, BURST[:2])
    process_many(first)
    before = Event.objects.for_tenant(tenant).count()
    # a redelivered task with the same rows, then a deletion between two adds
    deletion = (
        f"<xml><CreateTime>{NOW}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        "<ChangeType><![CDATA[del_follow_user]]></ChangeType>"
        "<UserID><![CDATA[lili]]></UserID><ExternalUserID><![CDATA[wmnew1]]></ExternalUserID>"
        "</xml>"
    )
    control.customer_deletes_staff("wmnew1", "lili")
    later = store(tenant, [deletion, BURST[2], BURST[3]])
    statuses = process_many(first + later)
    assert [statuses[pk] for pk in first + later] == ["processed"] * 5
    follow = Follow.objects.for_tenant(tenant).get(customer__external_userid="wmnew1")
    assert follow.status == Follow.Status.DELETED_BY_CUSTOMER
    assert Event.objects.for_tenant(tenant).count() > before
    assert Customer.objects.for_tenant(tenant).filter(external_userid="wmnew3").exists()


def test_a_task_takes_the_waiting_backlog_along_and_the_others_find_it_done(emulator):
    tenant, _ = corp(emulator, "drain")
    ids = store(tenant, BURST[:5])
    # the task of the last row runs first and takes the four waiting before it along
    statuses = process_many([ids[-1]])
    assert [statuses[pk] for pk in ids] == ["processed"] * 5
    events = Event.objects.for_tenant(tenant).count()
    # the tasks of those four then find their rows done and change nothing
    assert process_many([ids[0]]) == {ids[0]: "processed"}
    assert Event.objects.for_tenant(tenant).count() == events


def test_a_row_another_worker_claimed_is_left_to_it_until_its_claim_is_stale(emulator):
    from datetime import timedelta

    from django.utils import timezone

    from siyu.wecom.processing import CLAIM_TIMEOUT, rows_to_retry

    tenant, _ = corp(emulator, "claims")
    (inbox_id,) = store(tenant, BURST[:1])
    rows = CallbackInbox.objects.for_tenant(tenant)
    rows.filter(pk=inbox_id).update(claim="another-worker", claimed_at=timezone.now())
    assert process_many([inbox_id]) == {}
    assert rows.get(pk=inbox_id).status == "pending"
    assert inbox_id not in rows_to_retry(older_than=timedelta(0))  # it is being processed
    # the other worker died: after the claim timeout the row is taken over
    rows.filter(pk=inbox_id).update(claimed_at=timezone.now() - CLAIM_TIMEOUT * 2)
    assert inbox_id in rows_to_retry(older_than=timedelta(0))
    assert process_many([inbox_id]) == {inbox_id: "processed"}
