"""The console's segment pages: the list with counts, the rule builder (save and preview),
members, RFM layers and settings; data scope and tenant isolation."""

from __future__ import annotations

import json
import re

import pytest

from siyu.core.models import Event
from siyu.segments import rfm, services
from siyu.segments.models import CustomerRFM, RFMPolicy, Segment
from siyu.segments.tests.support_segments import NOW, build_population
from siyu.tenancy.services import system_actor
from siyu.testing.console import changelist_url

SHANGHAI = {"op": "and", "conditions": [{"field": "city", "operator": "contains", "value": "上海"}]}
LIST = "/console/segments/segment/"
ADD = "/console/segments/segment/add/"
PREVIEW = "/console/segments/segment/preview/"


@pytest.fixture
def people(tenant):
    return build_population(tenant)


@pytest.fixture
def segment(people, tenant):
    return services.create_segment(system_actor(tenant), name="上海客户", rules=SHANGHAI)


def change(segment: Segment) -> str:
    return f"/console/segments/segment/{segment.pk}/change/"


def preview(client, rules) -> tuple[int, dict]:
    response = client.post(PREVIEW, json.dumps({"rules": rules}), content_type="application/json")
    return response.status_code, response.json()


def counts_on(page) -> list[int]:
    html = page.content.decode()
    return [int(n) for n in re.findall(r'class="field-customers[^>]*>\s*(\d+)\s*<', html)]


def test_the_list_shows_kind_and_count(admin_staff, segment, login):
    response = login(admin_staff).get(LIST)
    assert response.status_code == 200
    (row,) = response.context["cl"].result_list
    assert row == segment
    assert "上海客户" in response.content.decode()
    assert counts_on(response) == [2]


def test_a_sales_staff_sees_the_count_of_their_own_customers(people, segment, login):
    # s1 owns ann and cat: of the Shanghai customers (ann, dan) only ann is theirs
    response = login(people.s1).get(LIST)
    assert response.status_code == 200
    assert counts_on(response) == [1]


def test_the_builder_creates_a_segment(admin_staff, people, tenant, login):
    client = login(admin_staff)
    page = client.get(ADD)
    assert page.status_code == 200
    builder = page.context["builder"]
    assert {"city", "tags", "event", "custom.skin"} <= {f["name"] for f in builder["fields"]}
    assert [t["label"] for t in builder["pickers"]["tags"]] == ["VIP", "新客", "老客"]
    # when the form posts a name and the rule as JSON
    response = client.post(
        ADD, {"name": "沪客", "kind": "dynamic", "description": "", "rules": json.dumps(SHANGHAI)}
    )
    # then the segment is saved through the service and the list opens
    assert response.status_code == 302 and response["Location"] == LIST
    saved = Segment.objects.for_tenant(tenant).get(name="沪客")
    assert saved.rules == SHANGHAI and saved.created_by == admin_staff
    assert Event.objects.for_tenant(tenant).filter(type="segment.created").count() == 1


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"name": "", "rules": "{}"}, "A segment needs a name"),
        ({"name": "x", "rules": "{not json"}, "The rules could not be read"),
        (
            {
                "name": "x",
                "rules": json.dumps(
                    {"conditions": [{"field": "city", "operator": "eq", "value": ""}]}
                ),
            },
            "Enter a text value",
        ),
    ],
)
def test_the_builder_shows_a_refusal_on_the_page(
    admin_staff, people, tenant, login, posted, message
):
    client = login(admin_staff)
    client.cookies["django_language"] = "en"
    response = client.post(ADD, {"kind": "dynamic", **posted}, headers={"Accept-Language": "en"})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Segment.objects.for_tenant(tenant).exists()


def test_a_taken_name_is_shown_on_the_page(admin_staff, segment, login, tenant):
    response = login(admin_staff).post(ADD, {"name": "上海客户", "kind": "dynamic", "rules": "{}"})
    assert response.status_code == 200
    assert response.context["error"].code == "conflict"
    assert Segment.objects.for_tenant(tenant).count() == 1


def test_the_builder_edits_a_segment(admin_staff, segment, login):
    client = login(admin_staff)
    page = client.get(change(segment))
    assert page.status_code == 200
    assert page.context["count"] == 2
    assert [c.name for c in page.context["sample"]] == ["Dan", "Ann"]
    assert page.context["sizes"]["sizes"] == [2]
    response = client.post(
        change(segment), {"name": "改名", "kind": "dynamic", "description": "", "rules": "{}"}
    )
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.rules) == ("改名", {"op": "and", "conditions": []})


def test_preview_counts_and_reports_errors_with_paths(admin_staff, people, login):
    client = login(admin_staff)
    status, body = preview(client, SHANGHAI)
    assert (status, body["count"]) == (200, 2)
    assert [row["name"] for row in body["sample"]] == ["Dan", "Ann"]
    bad = {
        "conditions": [
            SHANGHAI["conditions"][0],
            {"field": "tags", "operator": "has_all", "value": []},
        ]
    }
    status, body = preview(client, bad)
    assert status == 400
    assert body["error"]["details"]["errors"][0]["path"] == "conditions[1].value"


def test_a_sales_staffs_preview_counts_only_their_customers(people, login):
    status, body = preview(login(people.s2), {"op": "and", "conditions": []})
    assert (status, body["count"], [r["name"] for r in body["sample"]]) == (200, 1, ["Bob"])


def test_sales_may_look_but_not_create(people, segment, login):
    client = login(people.s1)
    assert client.get(ADD).status_code == 403
    page = client.get(change(segment))
    assert page.status_code == 200 and page.context["may_save"] is False
    assert client.post(change(segment), {"name": "x", "rules": "{}"}).status_code == 403


def test_members_page_lists_the_visible_customers(admin_staff, people, segment, login):
    url = f"/console/segments/segment/{segment.pk}/members/"
    rows = login(admin_staff).get(url).context["rows"]
    assert [row["name"] for row in rows] == ["Dan", "Ann"]


def test_delete_goes_through_the_service(admin_staff, segment, login, tenant):
    url = f"/console/segments/segment/{segment.pk}/delete/"
    response = login(admin_staff).post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Segment.objects.for_tenant(tenant).exists()
    assert Event.objects.for_tenant(tenant).filter(type="segment.deleted").count() == 1


def test_rebuild_a_static_segment(admin_staff, people, tenant, login):
    static = services.create_segment(system_actor(tenant), name="S", rules=SHANGHAI, kind="static")
    response = login(admin_staff).post(f"/console/segments/segment/{static.pk}/rebuild/")
    assert response.status_code == 302
    assert Event.objects.for_tenant(tenant).filter(type="segment.snapshot_taken").count() == 2


def test_rfm_layers_page_and_settings(admin_staff, people, tenant, login):
    rfm.compute_rfm(tenant, now=NOW)
    client = login(admin_staff)
    page = client.get(changelist_url(CustomerRFM))
    assert page.status_code == 200
    layers = {row["layer"]: row["customers"] for row in page.context["rfm_layers"]}
    assert sum(layers.values()) == 4
    # the settings page opens the tenant's one row and saves through the service
    settings_page = client.get(changelist_url(RFMPolicy))
    assert settings_page.status_code == 302
    response = client.post(
        settings_page["Location"],
        {
            "window_days": 180,
            "purchase_event_types": "order.paid\ncrm.purchase",
            "amount_key": "amount_fen",
        },
    )
    assert response.status_code == 302
    policy = RFMPolicy.objects.for_tenant(tenant).get()
    assert (policy.window_days, policy.purchase_event_types) == (
        180,
        ["order.paid", "crm.purchase"],
    )


def test_the_sidebar_lists_segments_and_rfm(admin_staff, login):
    from siyu.core.console import sidebar_navigation

    response = login(admin_staff).get(LIST)
    links = [
        item["link"]
        for group in sidebar_navigation(response.wsgi_request)
        for item in group["items"]
    ]
    assert LIST in links and changelist_url(CustomerRFM) in links


# --- tenant isolation ----------------------------------------------------------------------------
def test_another_tenants_segment_is_404_everywhere(other_admin, segment, login):
    client = login(other_admin)
    assert client.get(change(segment)).status_code == 404
    assert client.post(change(segment), {"name": "pwned", "rules": "{}"}).status_code == 404
    assert client.get(f"/console/segments/segment/{segment.pk}/members/").status_code == 404
    assert client.post(f"/console/segments/segment/{segment.pk}/rebuild/").status_code == 404
    assert (
        client.post(f"/console/segments/segment/{segment.pk}/delete/", {"post": "yes"}).status_code
        == 404
    )
    listing = client.get(LIST)
    assert "上海客户" not in listing.content.decode()
    segment.refresh_from_db()
    assert segment.name == "上海客户"


def test_another_tenant_cannot_preview_with_our_tag_ids(other_admin, people, login):
    rules = {"conditions": [{"field": "tags", "operator": "has_any", "value": [people.vip.pk]}]}
    status, body = preview(login(other_admin), rules)
    assert status == 400
    status, body = preview(login(other_admin), {"op": "and", "conditions": []})
    assert (status, body["count"]) == (200, 0)
