"""Full and incremental WeCom sync, against the real emulator over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.utils import translation

from siyu.community.models import Group, GroupMember
from siyu.core.models import Event
from siyu.customers.models import Customer, Follow, FollowTag, Tag
from siyu.tenancy.models import Department, Staff
from siyu.testing.factories import TenantFactory
from siyu.wecom.client import WeComClient
from siyu.wecom.emulator import EmulatorControl, EmulatorServer, World
from siyu.wecom.errors import WeComNotConfigured
from siyu.wecom.models import SyncRun
from siyu.wecom.sync import (
    STAGES,
    SyncAlreadyRunning,
    SyncProgress,
    run_sync_cli,
    sync_tenant,
)

AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORP_A, CORP_B = "wwsynccorpa", "wwsynccorpb"
CONTACT_SECRET, AGENT_SECRET, AGENT_ID = "contact-secret-sync", "agent-secret-sync", 1000002
STAFF = [
    {"userid": "zhangsan", "name": "张三", "department": [2]},
    {"userid": "lisi", "name": "李四", "department": [3]},
    {"userid": "wangwu", "name": "王五", "department": [3]},
    {"userid": "zhaoliu", "name": "赵六", "department": [1]},
]
SHARED = 10  # customers 0-9 are followed by two staff
CUSTOMERS = 30


@pytest.fixture
def wecom_cache(settings):
    """Tokens, rate-limit counters and the sync lock in a private, empty cache."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "wecom-sync-tests",
        }
    }
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def emulator(settings, wecom_cache):
    with EmulatorServer(World(seed="sync"), callback_delivery=False) as server:
        settings.WECOM_API_BASE = f"{server.base_url}/cgi-bin"
        yield server


def seed_corp(emulator: EmulatorServer, corp_id: str, prefix: str = "") -> dict[str, Any]:
    """A corp with 3 departments, 4 staff, 3 tags, 30 customers (10 shared) and 3 groups."""
    control = EmulatorControl(emulator.base_url, corp_id=corp_id)
    control.setup_corp(
        corp_id,
        name=f"{prefix}Corp",
        contact_secret=CONTACT_SECRET,
        agent_secret=AGENT_SECRET,
        agent_id=AGENT_ID,
        token="tok",
        encoding_aes_key=AES_KEY,
        departments=[
            {"id": 2, "name": f"{prefix}华东", "parentid": 1},
            {"id": 3, "name": f"{prefix}上海", "parentid": 2},
        ],
        staff=STAFF,
    )
    level = control.tag_change("create", group_name="客户等级", tags=["高意向", "低意向"])
    source = control.tag_change("create", group_name="来源", tags=["直播"])
    high, low = level["tag_ids"]
    live = source["tag_ids"][0]
    userids = [s["userid"] for s in STAFF]
    specs = []
    for number in range(CUSTOMERS):
        first = userids[number % 4]
        follows = [{"userid": first, "tags": [high] if number % 3 == 0 else [], "state": "cc_a"}]
        if number < SHARED:
            second = userids[(number + 1) % 4]
            follows.append({"userid": second, "tags": [low, live], "remark": "老客户"})
        specs.append(
            {
                "external_userid": f"wm{prefix}{number:04d}",
                "name": f"{prefix}客户{number}",
                "follows": follows,
            }
        )
    control.bulk_customers(specs)
    chats = [
        control.create_group("zhangsan", "VIP群", members=["lisi", f"wm{prefix}0000"]),
        control.create_group("lisi", "新品群", members=[f"wm{prefix}{n:04d}" for n in range(1, 6)]),
        control.create_group("wangwu", "空群"),
    ]
    return {"control": control, "tags": (high, low, live), "chats": chats}


@pytest.fixture
def corp(emulator) -> dict[str, Any]:
    return seed_corp(emulator, CORP_A)


def make_tenant(slug: str, corp_id: str, *, app: bool = True):
    fields = {"wecom_corp_id": corp_id, "wecom_contact_secret": CONTACT_SECRET}
    if app:
        fields.update(wecom_agent_id=str(AGENT_ID), wecom_agent_secret=AGENT_SECRET)
    return TenantFactory(slug=slug, name=slug.title(), **fields)


@pytest.fixture
def brand(db):
    return make_tenant("sync-a", CORP_A)


def events(tenant) -> int:
    return Event.objects.for_tenant(tenant).count()


def counts(tenant) -> dict[str, int]:
    follows = Follow.objects.for_tenant(tenant)
    return {
        "departments": Department.objects.for_tenant(tenant).count(),
        "staff": Staff.objects.for_tenant(tenant).filter(status=Staff.Status.ACTIVE).count(),
        "tags": Tag.objects.for_tenant(tenant).filter(deleted=False).count(),
        "customers": Customer.objects.for_tenant(tenant).count(),
        "follows": follows.filter(status=Follow.Status.ACTIVE).count(),
        "follow_tags": FollowTag.objects.for_tenant(tenant).count(),
        "groups": Group.objects.for_tenant(tenant).filter(status=Group.Status.ACTIVE).count(),
        "members": GroupMember.objects.for_tenant(tenant)
        .filter(status=GroupMember.Status.ACTIVE)
        .count(),
    }


EXPECTED = {
    "departments": 3,
    "staff": 4,
    "tags": 3,
    "customers": 30,
    "follows": 40,
    "follow_tags": 10 + 2 * SHARED,  # "高意向" on every third customer, two tags when shared
    "groups": 3,
    "members": 3 + 6 + 1,
}


# --- a first full sync ------------------------------------------------------------------------
def test_a_full_sync_imports_the_corp(brand, corp):
    # when
    report = sync_tenant(brand, full=True)
    # then
    assert counts(brand) == EXPECTED
    assert {k: report.counters[k] for k in ("departments", "staff", "tags", "groups")} == {
        "departments": 3,
        "staff": 4,
        "tags": 3,
        "groups": 3,
    }
    assert report.counters["customers"] == report.counters["customers_created"] == 30
    assert report.counters["follows"] == report.counters["follows_created"] == 40
    assert report.counters["members"] == 10
    assert report.warnings == [] and report.incomplete_staff == []
    # the directory: departments under their parents, staff in their main department
    shanghai = Department.objects.for_tenant(brand).get(wecom_id=3)
    assert shanghai.parent.wecom_id == 2 and shanghai.parent.parent.wecom_id == 1
    lisi = Staff.objects.for_tenant(brand).get(wecom_userid="lisi")
    assert (lisi.name, lisi.department) == ("李四", shanghai)


def test_a_customer_of_two_staff_is_one_customer_with_two_follows(brand, corp):
    sync_tenant(brand, full=True)
    customer = Customer.objects.for_tenant(brand).get(external_userid="wm0001")
    follows = Follow.objects.for_tenant(brand).filter(customer=customer).order_by("staff__id")
    assert {f.staff.wecom_userid for f in follows} == {"lisi", "wangwu"}
    assert customer.owner.wecom_userid in {"lisi", "wangwu"}
    shared = follows.get(staff__wecom_userid="wangwu")
    assert shared.remark == "老客户"
    assert sorted(link.tag.name for link in shared.follow_tags.all()) == ["低意向", "直播"]
    first = follows.get(staff__wecom_userid="lisi")
    assert first.state == "cc_a" and list(first.follow_tags.all()) == []
    assert (
        Event.objects.for_tenant(brand).filter(type="customer.added", customer_id=customer.pk)
    ).count() == 1
    assert (
        Event.objects.for_tenant(brand).filter(type="follow.added", customer_id=customer.pk)
    ).count() == 2


def test_group_members_are_linked_to_customers_and_staff(brand, corp):
    sync_tenant(brand, full=True)
    vip = Group.objects.for_tenant(brand).get(chat_id=corp["chats"][0])
    members = {m.userid: m for m in GroupMember.objects.for_tenant(brand).filter(group=vip)}
    assert set(members) == {"zhangsan", "lisi", "wm0000"}
    assert members["wm0000"].customer.external_userid == "wm0000"
    assert members["wm0000"].name == "客户0"  # need_name=1
    assert members["lisi"].staff.wecom_userid == "lisi"
    assert (vip.name, vip.owner.wecom_userid, vip.member_count) == ("VIP群", "zhangsan", 3)
    assert vip.customer_member_count == 1


# --- idempotence ------------------------------------------------------------------------------
@pytest.mark.parametrize("full", [True, False])
def test_a_second_sync_changes_nothing(brand, corp, full):
    # given
    sync_tenant(brand, full=True)
    before = (events(brand), counts(brand))
    # when
    report = sync_tenant(brand, full=full)
    # then
    assert (events(brand), counts(brand)) == before
    changed = [k for k, v in report.counters.items() if k.endswith(("_created", "_updated")) and v]
    assert changed == []
    assert report.counters["customers"] == 30 and report.counters["follows"] == 40


def test_changes_in_wecom_are_applied_by_the_next_sync(brand, corp):
    # given
    sync_tenant(brand, full=True)
    control = corp["control"]
    high, low, _live = corp["tags"]
    control.edit_contact("zhangsan", "wm0000", remark="大客户", remove_tags=[high], add_tags=[low])
    control.add_contact("zhaoliu", customer={"name": "新客户", "external_userid": "wmnew"})
    control.join_group(chat_id=corp["chats"][2], member="wm0002")
    # when
    report = sync_tenant(brand, full=False)
    # then
    follow = Follow.objects.for_tenant(brand).get(
        customer__external_userid="wm0000", staff__wecom_userid="zhangsan"
    )
    assert follow.remark == "大客户"
    assert [link.tag.name for link in follow.follow_tags.all()] == ["低意向"]
    assert Customer.objects.for_tenant(brand).get(external_userid="wmnew").owner.wecom_userid == (
        "zhaoliu"
    )
    empty = Group.objects.for_tenant(brand).get(chat_id=corp["chats"][2])
    assert empty.customer_member_count == 1
    assert report.counters["customers_created"] == 1
    assert report.counters["follows_created"] == 1 and report.counters["follows_updated"] == 1
    assert report.counters["groups_updated"] == 1


# --- deletions ----------------------------------------------------------------------------------
def test_deletions_in_wecom_are_applied_by_the_next_full_sync_only(brand, corp):
    # given
    sync_tenant(brand, full=True)
    control = corp["control"]
    control.customer_deletes_staff("wm0001", "lisi")  # wm0001 keeps wangwu
    control.staff_deletes_customer("zhaoliu", "wm0011")  # wm0011 has no other friend
    control.dismiss_group(corp["chats"][1])
    control.delete_staff("wangwu")
    # when: an incremental sync deletes nothing
    incremental = sync_tenant(brand, full=False)
    # then
    assert counts(brand)["follows"] == 40 and counts(brand)["groups"] == 3
    assert incremental.counters["follows_removed"] == incremental.counters["staff_departed"] == 0
    # when: the full sync
    report = sync_tenant(brand, full=True)
    # then
    follows = Follow.objects.for_tenant(brand)
    ended = follows.get(customer__external_userid="wm0001", staff__wecom_userid="lisi")
    assert ended.status == Follow.Status.DELETED_BY_STAFF
    assert follows.get(customer__external_userid="wm0001", staff__wecom_userid="wangwu").is_active
    lost = Customer.objects.for_tenant(brand).get(external_userid="wm0011")
    assert lost.status == Customer.Status.LOST
    assert Group.objects.for_tenant(brand).get(chat_id=corp["chats"][1]).status == "dismissed"
    wangwu = Staff.objects.for_tenant(brand).get(wecom_userid="wangwu")
    assert wangwu.status == Staff.Status.DEPARTED
    # a departed member's customers wait for their hand-over: their follows stay
    assert follows.filter(staff=wangwu, status=Follow.Status.ACTIVE).count() == 10
    assert report.counters["follows_removed"] == 2
    assert report.counters["groups_dismissed"] == 1
    assert report.counters["staff_departed"] == 1
    # and a further full sync has nothing left to do
    again = sync_tenant(brand, full=True)
    assert again.counters["follows_removed"] == again.counters["groups_dismissed"] == 0


# --- faults and configuration -------------------------------------------------------------------
def test_a_transient_fault_is_retried_and_the_sync_completes(brand, corp, emulator, wecom_cache):
    # given: WeCom answers "API frequency out of limit" twice
    corp["control"].inject_fault(
        "errcode", api="externalcontact/batch/get_by_user", count=2, errcode=45009
    )
    client = WeComClient(
        CORP_A,
        CONTACT_SECRET,
        base_url=f"{emulator.base_url}/cgi-bin",
        cache=wecom_cache,
        backoff_initial=0,
        backoff_max=0,
    )
    # when
    report = sync_tenant(brand, full=True, client=client)
    # then
    assert counts(brand) == EXPECTED
    assert report.counters["follows"] == 40
    assert corp["control"].get("faults")["api"] == []  # both faults were hit


def test_a_tenant_without_wecom_secrets_gets_a_clear_error(db, emulator):
    tenant = TenantFactory(slug="no-secrets", wecom_corp_id="")
    with pytest.raises(WeComNotConfigured) as caught:
        sync_tenant(tenant)
    assert "客户联系 Secret" in caught.value.message  # the console's language
    assert caught.value.details["missing"] == ["wecom_corp_id", "wecom_contact_secret"]
    assert not SyncRun.objects.for_tenant(tenant).exists()


def test_without_an_app_secret_staff_come_from_the_contact_member_list(db, corp):
    tenant = make_tenant("no-app", CORP_A, app=False)
    with translation.override("en"):
        report = sync_tenant(tenant, full=True)
    assert Department.objects.for_tenant(tenant).count() == 0
    staff = Staff.objects.for_tenant(tenant)
    assert sorted(staff.values_list("wecom_userid", flat=True)) == sorted(
        s["userid"] for s in STAFF
    )
    assert report.counters["customers"] == 30 and report.counters["staff_departed"] == 0
    assert len(report.warnings) == 1 and "app" in report.warnings[0]


def test_a_failed_sync_is_recorded_with_its_error(brand, corp):
    corp["control"].inject_fault("errcode", api="externalcontact/get_corp_tag_list", errcode=48002)
    with pytest.raises(Exception, match="48002"):
        sync_tenant(brand, full=True)
    run = SyncRun.objects.for_tenant(brand).get()
    assert (run.status, run.stage) == (SyncRun.Status.FAILED, "tags")
    assert "48002" in run.error and run.finished_at is not None
    assert run.counters["staff"] == 4


# --- progress -----------------------------------------------------------------------------------
def test_progress_is_reported_and_recorded(brand, corp):
    seen: list[SyncProgress] = []
    report = sync_tenant(brand, full=True, progress=seen.append)
    stages = [p.stage for p in seen if p.stage_done and p.stage in STAGES]
    assert stages == list(STAGES)
    percents = [p.percent for p in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0
    customers_done = next(p for p in seen if p.stage == "customers" and p.stage_done)
    assert customers_done.counters["customers"] == 30
    run = SyncRun.objects.for_tenant(brand).get(pk=report.run_id)
    assert (run.status, run.kind, run.stage, run.progress) == ("succeeded", "full", "done", 100)
    assert run.counters == report.counters
    assert run.counters["calls"] >= 1 + 1 + 1 + 1 + 1 + 3  # dept, users, tags, batch, list, gets
    assert run.finished_at >= run.started_at


def test_two_syncs_of_one_tenant_never_run_at_once(brand, corp, wecom_cache):
    # given: another process holds the tenant's lock
    wecom_cache.set(f"siyu:wecom:sync:{brand.pk}", "another-process")
    with pytest.raises(SyncAlreadyRunning):
        sync_tenant(brand)
    # given: the lock is gone (cache cleared) but a run is still alive
    wecom_cache.clear()
    SyncRun.objects.for_tenant(brand).create(tenant=brand, kind="full")
    with pytest.raises(SyncAlreadyRunning):
        sync_tenant(brand)
    # a run without a heartbeat for long was cut off: it is closed and a new one starts
    SyncRun.objects.for_tenant(brand).update(updated_at="2000-01-01T00:00:00Z")
    sync_tenant(brand, full=False)
    statuses = sorted(SyncRun.objects.for_tenant(brand).values_list("status", flat=True))
    assert statuses == ["failed", "succeeded"]


# --- tenants --------------------------------------------------------------------------------------
def test_two_tenants_on_two_corps_do_not_mix(brand, corp, emulator):
    # given
    seed_corp(emulator, CORP_B, prefix="b")
    other = make_tenant("sync-b", CORP_B)
    # when
    sync_tenant(brand, full=True)
    sync_tenant(other, full=True)
    sync_tenant(brand, full=True)
    # then
    assert counts(brand) == counts(other) == EXPECTED
    mine = set(Customer.objects.for_tenant(brand).values_list("external_userid", flat=True))
    theirs = set(Customer.objects.for_tenant(other).values_list("external_userid", flat=True))
    assert mine == {f"wm{n:04d}" for n in range(30)}
    assert theirs == {f"wmb{n:04d}" for n in range(30)}
    assert Department.objects.for_tenant(other).get(wecom_id=2).name == "b华东"
    follow_staff = Follow.objects.for_tenant(other).values_list("staff__tenant_id", flat=True)
    assert set(follow_staff) == {other.pk}


# --- the command line ---------------------------------------------------------------------------
def test_the_cli_prints_a_line_per_stage(brand, corp, capsys):
    with translation.override("en"):
        assert run_sync_cli("sync-a", True) == 0
    out = capsys.readouterr().out
    for stage in ("departments", "staff", "tags", "customers and friendships", "groups"):
        assert f"✓ {stage}:" in out
    assert "30 customers (30 new, 0 changed), 40 friendships (40 new" in out
    assert "done in" in out


def test_the_cli_refuses_an_unknown_tenant(db, capsys):
    assert run_sync_cli("nobody-here", False) == 2
    assert "nobody-here" in capsys.readouterr().err


def test_the_cli_reports_a_tenant_that_cannot_sync(db, emulator, capsys):
    TenantFactory(slug="half-set", wecom_corp_id="wwhalf")
    assert run_sync_cli("half-set", False) == 1
    assert "Secret" in capsys.readouterr().err


# --- the console --------------------------------------------------------------------------------
def test_the_sync_page_lists_the_tenants_runs_with_progress(
    tenant, other_tenant, admin_staff, login
):
    from siyu.testing.console import change_url, changelist_url

    # given
    mine = SyncRun.objects.for_tenant(tenant).create(
        tenant=tenant, kind="full", stage="customers", progress=42, counters={"customers": 7}
    )
    theirs = SyncRun.objects.for_tenant(other_tenant).create(
        tenant=other_tenant, kind="incremental", counters={"customers": 987654}
    )
    client = login(admin_staff)
    # when
    response = client.get(changelist_url(SyncRun))
    # then
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [mine]
    page = response.content.decode()
    assert "42%" in page and "987654" not in page
    assert 'http-equiv="refresh"' in page  # reloads while the run is going
    assert client.get(change_url(mine)).status_code == 200
    assert client.get(change_url(theirs)).status_code == 404


def test_sync_now_queues_a_sync_of_the_staffs_tenant(
    tenant, admin_staff, login, corp, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    from siyu.tenancy import services

    # given
    services.update_tenant(
        tenant,
        by=services.system_actor(tenant),
        wecom_corp_id=CORP_A,
        wecom_contact_secret=CONTACT_SECRET,
    )
    client = login(admin_staff)
    url = reverse("admin:wecom_syncrun_sync_now")
    dialog = client.get(url).content.decode()
    assert "立即与企业微信同步" in dialog and "全量同步" in dialog
    # when: tasks run in-process in tests
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"_form_submitted": "on", "full": "on"}, HTTP_HX_REQUEST="true")
    # then
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("admin:wecom_syncrun_changelist")
    run = SyncRun.objects.for_tenant(tenant).get()
    assert (run.kind, run.trigger, run.status) == ("full", "console", "succeeded")
    assert run.counters["customers"] == 30
    assert Customer.objects.for_tenant(tenant).count() == 30


def test_sync_now_needs_the_permission_and_a_configured_tenant(
    tenant, admin_staff, operator_staff, login, client
):
    from django.urls import reverse

    url = reverse("admin:wecom_syncrun_sync_now")
    login(operator_staff)
    assert client.post(url, {"_form_submitted": "on"}).status_code == 403
    client.logout()
    login(admin_staff)
    response = client.post(url, {"_form_submitted": "on"}, follow=True)
    assert not SyncRun.objects.for_tenant(tenant).exists()
    assert "Secret" in response.content.decode() or "secret" in response.content.decode()


# --- the tasks ----------------------------------------------------------------------------------
def test_the_schedule_syncs_configured_tenants_only(brand, corp, monkeypatch):
    from django.utils import timezone

    from siyu.wecom import tasks

    # given: a tenant without secrets next to a configured one
    TenantFactory(slug="not-set-up", wecom_corp_id="")
    hour = timezone.localtime().replace(hour=tasks.NIGHTLY_FULL_SYNC_HOUR)
    monkeypatch.setattr(timezone, "localtime", lambda *args: hour)
    # when: 03:00 (tasks run in-process in tests)
    assert tasks.scheduled_syncs.call_local() == 1
    # then
    run = SyncRun.objects.for_tenant(brand).get()
    assert (run.kind, run.trigger, run.status) == ("full", "schedule", "succeeded")
    # an hour later: incremental
    monkeypatch.setattr(timezone, "localtime", lambda *args: hour.replace(hour=4))
    tasks.scheduled_syncs.call_local()
    kinds = list(SyncRun.objects.for_tenant(brand).order_by("id").values_list("kind", flat=True))
    assert kinds == ["full", "incremental"]


def test_the_sync_task_skips_a_tenant_that_is_syncing(brand, corp, wecom_cache):
    from siyu.wecom.tasks import sync_tenant_task

    wecom_cache.set(f"siyu:wecom:sync:{brand.pk}", "another-process")
    assert sync_tenant_task.call_local(brand.pk, True) == "sync_running"
    assert sync_tenant_task.call_local(999999, True) == "not_configured"
