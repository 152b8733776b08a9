"""The console shell: dashboard, sidebar, language, the events and audit log pages."""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.core.dashboard import events_per_day
from siyu.core.events import record_event
from siyu.core.models import AuditEntry
from siyu.tenancy import services
from siyu.testing.console import change_url
from siyu.testing.factories import StaffFactory


def _kpis(response) -> dict[str, int]:
    return {kpi["key"]: kpi["value"] for kpi in response.context["dashboard"]["kpis"]}


# --- dashboard ------------------------------------------------------------------------------
def test_the_dashboard_shows_live_counts_of_the_own_tenant(
    admin_staff, sales_staff, other_rows, login, tenant, actor_of
):
    # given: one departed member, three events today and one five days ago, one live key
    leaver = StaffFactory(tenant=tenant)
    services.mark_staff_departed(leaver, by=actor_of(admin_staff))
    for number in range(3):
        record_event(tenant, "customer.added", staff=sales_staff, key=f"today-{number}")
    record_event(tenant, "order.paid", occurred_at=timezone.now() - timedelta(days=5))
    services.create_api_key(tenant, name="k", scopes=["staff:read"], by=actor_of(admin_staff))
    client = login(admin_staff)
    # when
    response = client.get("/console/")
    # then (tenant.created, staff.added x3 and staff.departed are events of today too)
    assert response.status_code == 200
    kpis = _kpis(response)
    assert kpis["staff_active"] == 2
    assert kpis["staff_departed"] == 1
    assert kpis["events_today"] == 1 + 3 + 1 + 3
    assert kpis["events_week"] == kpis["events_today"] + 1
    assert kpis["api_keys"] == 1
    assert kpis["audit_entries"] == AuditEntry.objects.for_tenant(tenant).count()
    page = response.content.decode()
    assert 'id="events-chart"' in page
    assert 'id="events-chart-data"' in page
    assert "vendor/echarts/echarts.min.js" in page


def test_the_dashboard_counts_change_with_the_database(admin_staff, login, tenant):
    client = login(admin_staff)
    before = _kpis(client.get("/console/"))["staff_active"]
    StaffFactory(tenant=tenant)
    assert _kpis(client.get("/console/"))["staff_active"] == before + 1


def test_sales_dashboard_counts_only_their_own_scope(admin_staff, sales_staff, login, tenant):
    record_event(tenant, "customer.added", staff=sales_staff, key="mine")
    record_event(tenant, "customer.added", staff=admin_staff, key="theirs")
    response = login(sales_staff).get("/console/")
    kpis = _kpis(response)
    assert kpis["staff_active"] == 1  # themselves
    assert kpis["events_today"] == 2  # their staff.added and their customer
    assert "api_keys" not in kpis and "audit_entries" not in kpis


def test_events_per_day_are_stacked_by_type_family(admin_staff, tenant, actor_of):
    now = timezone.now()
    record_event(tenant, "order.paid", occurred_at=now - timedelta(days=2), key="o1")
    record_event(tenant, "order.refunded", occurred_at=now - timedelta(days=2), key="o2")
    record_event(tenant, "customer.added", occurred_at=now, key="c1")
    record_event(tenant, "customer.added", occurred_at=now - timedelta(days=20), key="old")
    chart = events_per_day(actor_of(admin_staff), now=now)
    assert len(chart["days"]) == 14
    series = {s["key"]: s["data"] for s in chart["series"]}
    assert series["order"][-3] == 2 and sum(series["order"]) == 2
    assert series["customer"][-1] == 1 and sum(series["customer"]) == 1
    assert series["staff"][-1] == 1  # the admin's own staff.added
    assert series["tenant"][-1] == 1  # tenant.created
    assert chart["total"] == 5


def test_the_chart_data_is_embedded_as_json(admin_staff, login, tenant):
    record_event(tenant, "customer.added", key="c1")
    page = login(admin_staff).get("/console/").content.decode()
    start = page.index('<script id="events-chart-data" type="application/json">')
    payload = page[page.index(">", start) + 1 : page.index("</script>", start)]
    data = json.loads(payload)
    assert {s["key"] for s in data["series"]} >= {"customer", "staff"}


def test_the_echarts_script_is_served(client, db):
    response = client.get("/static/vendor/echarts/echarts.min.js")
    assert response.status_code == 200


# --- shell: language, sidebar, badge --------------------------------------------------------
def test_the_console_is_chinese_by_default_and_switches_to_english(admin_staff, login):
    client = login(admin_staff)
    page = client.get("/console/").content.decode()
    assert 'lang="zh-hans"' in page
    for title in ["数据", "设置", "仪表盘", "员工", "在职员工", "近 14 天每日事件"]:
        assert title in page, title
    assert 'action="/i18n/setlang/"' in page
    client.post("/i18n/setlang/", {"language": "en", "next": "/console/"})
    page = client.get("/console/").content.decode()
    assert 'lang="en"' in page
    assert "Settings" in page and "Dashboard" in page and "设置" not in page


def test_an_english_browser_still_gets_the_chinese_console_but_english_api_errors(
    admin_staff, login
):
    client = login(admin_staff)
    page = client.get("/console/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert 'lang="zh-hans"' in page.content.decode()
    response = client.get("/api/v1/staff/999999", headers={"Accept-Language": "en"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"].isascii()


def test_the_sidebar_is_grouped_by_domain_and_gated_by_permission(
    admin_staff, sales_staff, login, client
):
    admin_groups = {
        str(group["title"]): [str(item["title"]) for item in group["items"]]
        for group in login(admin_staff).get("/console/").context["sidebar_navigation"]
    }
    crm = ["客户", "标签组", "标签", "导入客户", "导出客户", "自定义字段", "生命周期规则"]
    crm += ["流失提醒", "客户继承", "重复客户", "自动打标签规则", "分群", "RFM 分层"]
    assert admin_groups == {
        "客户": crm,
        "触达": ["我的待办"],
        "社群": ["客户群"],
        "交易": ["订单", "商品", "商城 Webhook"],
        "数据": ["仪表盘", "后台任务", "数据分析", "事件"],
        "设置": [
            "企业",
            "部门",
            "员工",
            "角色",
            "API 密钥",
            "RFM 设置",
            "审计日志",
            "企业微信同步",
        ],
    }
    client.logout()
    sales_groups = {
        str(group["title"]): [str(item["title"]) for item in group["items"]]
        for group in login(sales_staff).get("/console/").context["sidebar_navigation"]
    }
    # no import or export (permissions the sales role lacks), no tenant settings
    assert sales_groups == {
        "客户": [page for page in crm if page not in ("导入客户", "导出客户")],
        "触达": ["我的待办"],
        "社群": ["客户群"],
        "交易": ["订单", "商品"],  # what their customers bought; no webhook
        "数据": ["仪表盘", "后台任务", "事件"],  # no tenant-wide analytics
        "设置": ["员工", "RFM 设置"],
    }


def test_the_header_shows_the_tenant(admin_staff, login):
    assert "Brand A" in login(admin_staff).get("/console/").content.decode()


def test_users_without_active_staff_cannot_enter(admin_staff, login, actor_of, client):
    sales = StaffFactory(tenant=admin_staff.tenant, login=True)
    services.mark_staff_departed(sales, by=actor_of(admin_staff))
    assert not client.login(username=sales.user.username, password="Siyu-test-pass-42")
    response = client.get("/console/")
    assert response.status_code == 302 and "/console/login/" in response["Location"]


def test_a_login_without_an_active_staff_record_cannot_enter(db, client, django_user_model):
    django_user_model.objects.create_user("loner", password="Loner-pass-123", is_staff=True)
    client.login(username="loner", password="Loner-pass-123")
    response = client.get("/console/")
    assert response.status_code == 302 and "/console/login/" in response["Location"]


def test_the_staff_of_an_inactive_tenant_cannot_enter(admin_staff, login, tenant, actor_of):
    client = login(admin_staff)
    services.update_tenant(tenant, by=actor_of(admin_staff), is_active=False)
    response = client.get("/console/tenancy/staff/")
    assert response.status_code == 302 and "/console/login/" in response["Location"]


def test_signing_in_at_the_login_page_lands_on_the_dashboard(admin_staff, client):
    page = client.get("/console/login/").content.decode()
    assert 'action="/console/login/?next=/console/"' in page
    response = client.post(
        "/console/login/?next=/console/",
        {"username": admin_staff.user.username, "password": "Siyu-test-pass-42"},
    )
    assert response.status_code == 302 and response["Location"] == "/console/"


# --- events ---------------------------------------------------------------------------------
def test_events_are_listed_read_only_and_scoped(admin_staff, other_rows, login, tenant):
    event, _ = record_event(tenant, "customer.added", payload={"name": "客户甲"}, key="e1")
    client = login(admin_staff)
    listing = client.get("/console/core/event/").content.decode()
    assert "customer.added" in listing and "zeta.happened" not in listing
    detail = client.get(change_url(event))
    assert detail.status_code == 200 and "客户甲" in detail.content.decode()
    assert client.post(change_url(event), {"type": "x"}).status_code == 403
    assert client.get("/console/core/event/add/").status_code == 403
    assert client.get(change_url(other_rows["event"])).status_code == 404
    assert client.post(change_url(other_rows["event"]), {"type": "x"}).status_code == 404


@pytest.mark.parametrize("query", ["type__exact=order.paid", "source__exact=api"])
def test_events_filter_by_type_and_source(query, admin_staff, login, tenant):
    record_event(tenant, "order.paid", source="api", key="o1")
    record_event(tenant, "customer.added", source="wecom", key="c1")
    response = login(admin_staff).get(f"/console/core/event/?{query}")
    assert [e.type for e in response.context["cl"].result_list] == ["order.paid"]


def test_sales_see_only_their_own_events(admin_staff, sales_staff, login, tenant):
    mine, _ = record_event(tenant, "customer.added", staff=sales_staff, key="mine")
    theirs, _ = record_event(tenant, "customer.added", staff=admin_staff, key="theirs")
    client = login(sales_staff)
    listed = set(client.get("/console/core/event/").context["cl"].result_list)
    assert mine in listed and theirs not in listed
    assert client.get(change_url(theirs)).status_code == 404


# --- audit log ------------------------------------------------------------------------------
def test_the_audit_log_lists_who_changed_what(admin_staff, sales_staff, login, tenant):
    client = login(admin_staff)
    client.post(change_url(sales_staff), {"name": "Renamed Sales", "roles": []})
    entry = AuditEntry.objects.for_tenant(tenant).get(action="staff.updated")
    listing = client.get("/console/core/auditentry/").content.decode()
    assert "staff.updated" in listing and admin_staff.name in listing
    assert "Renamed Sales" in listing
    detail = client.get(change_url(entry)).content.decode()
    assert "Renamed Sales" in detail and "sales" in detail
    assert client.post(change_url(entry), {"action": "x"}).status_code == 403


def test_console_sign_ins_are_audited(admin_staff, login, tenant):
    login(admin_staff)
    entry = AuditEntry.objects.for_tenant(tenant).get(action="user.logged_in")
    assert entry.staff == admin_staff and entry.channel == "console"


def test_console_sign_outs_are_audited(admin_staff, login, tenant):
    client = login(admin_staff)
    assert client.post("/console/logout/").status_code == 200
    assert AuditEntry.objects.for_tenant(tenant).filter(action="user.logged_out").exists()


def test_another_tenants_audit_entries_stay_hidden(admin_staff, other_rows, login):
    client = login(admin_staff)
    assert "Zeta" not in client.get("/console/core/auditentry/").content.decode()
    assert client.get(change_url(other_rows["auditentry"])).status_code == 404


def test_sales_cannot_read_the_audit_log(sales_staff, login):
    assert login(sales_staff).get("/console/core/auditentry/").status_code == 403


# --- translations --------------------------------------------------------------------------
def test_compile_messages_writes_catalogues_gettext_reads(tmp_path):
    import gettext

    import polib

    from siyu.testing.console import COMPILE_SCRIPT

    po_path = tmp_path / "zh_Hans" / "LC_MESSAGES" / "django.po"
    po_path.parent.mkdir(parents=True)
    catalogue = polib.POFile()
    catalogue.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    translated, untranslated = "Settings", "Not translated yet"
    catalogue.append(polib.POEntry(msgid=translated, msgstr="设置"))
    catalogue.append(polib.POEntry(msgid=untranslated, msgstr=""))
    catalogue.save(str(po_path))
    spec = importlib.util.spec_from_file_location("compile_messages", COMPILE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert module.main([str(tmp_path)]) == 0

    with po_path.with_suffix(".mo").open("rb") as mo_file:
        translations = gettext.GNUTranslations(mo_file)
    translate = translations.gettext  # not gettext("..."): makemessages would collect it
    assert translate(translated) == "设置"
    assert translate(untranslated) == untranslated


def test_no_console_list_draws_a_date_hierarchy():
    """The hierarchy reads every visible row's date on each page; lists use day ranges."""
    from django.contrib import admin

    drawn = [type(page).__name__ for page in admin.site._registry.values() if page.date_hierarchy]
    assert drawn == []


def test_the_event_list_filters_by_day_range(admin_staff, login, tenant):
    from siyu.core.models import Event

    now = timezone.now()
    for days_ago in (0, 3, 10):
        record_event(tenant, "note.added", occurred_at=now - timedelta(days=days_ago), payload={})
    start = timezone.localdate(now - timedelta(days=5)).isoformat()
    response = login(admin_staff).get(
        "/console/core/event/", {"occurred_at_from": start, "type": "note.added"}
    )
    assert response.status_code == 200
    listed = list(response.context["cl"].result_list)
    assert len(listed) == 2 and all(isinstance(event, Event) for event in listed)
