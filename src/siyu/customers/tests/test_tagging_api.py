"""The tags API: the library (mirrored with WeCom), a customer's tags, bulk tagging jobs and
auto-tag rules; scopes, permissions, data scope and tenant isolation."""

from __future__ import annotations

import pytest

from siyu.core.models import BackgroundJob
from siyu.customers import tagging
from siyu.customers.models import Customer
from siyu.customers.tests import support_tags
from siyu.customers.tests.support_tags import carried, tag_named, wecom_library
from siyu.tenancy.services import system_actor
from siyu.testing.factories import CustomerFactory, StaffFactory

brand = support_tags.brand
control = support_tags.control
emulator = support_tags.emulator
wecom_cache = support_tags.wecom_cache

IN_SHANGHAI = {"op": "and", "conditions": [{"field": "city", "operator": "eq", "value": "上海"}]}


@pytest.fixture
def shop(tenant):
    actor = system_actor(tenant)
    mei = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="mei")
    lan = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="lan")
    group = tagging.create_tag_group(actor, name="活动", tags=["双十一", "618"], local=True)
    return {
        "actor": actor,
        "mei": mei,
        "group": group,
        "hers": CustomerFactory(tenant=tenant, staff=mei),
        "not_hers": CustomerFactory(tenant=tenant, staff=lan),
    }


# --- the library ----------------------------------------------------------------------------------
def test_groups_list_their_tags_with_usage_counts(api, tenant, shop):
    tagging.tag_customer(shop["actor"], shop["hers"], tag_named(tenant, "双十一"))
    response = api.get("/tags/groups")
    assert response.status_code == 200
    (group,) = response.json()
    assert group["name"] == "活动" and group["wecom_group_id"] is None
    assert {t["name"]: t["customers"] for t in group["tags"]} == {"双十一": 1, "618": 0}


def test_a_group_created_through_the_api_is_created_in_wecom(api_as, brand, emulator):
    api = api_as(brand)
    response = api.post(
        "/tags/groups", {"name": "购买价位", "tags": [{"name": "9.9 体验课"}, {"name": "199 套餐"}]}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["wecom_group_id"].startswith("et")
    assert [t["name"] for t in body["tags"]] == ["9.9 体验课", "199 套餐"]
    assert wecom_library(emulator) == {"购买价位": {"9.9 体验课": 0, "199 套餐": 0}}
    # a taken name is a 409 with WeCom's errcode or Siyu's check
    again = api.post("/tags/groups", {"name": "购买价位", "tags": [{"name": "x"}]})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "tag_name_taken"


def test_wecom_refusing_a_tag_is_a_clear_409(api_as, brand, emulator, control):
    api = api_as(brand)
    group = api.post("/tags/groups", {"name": "等级", "tags": [{"name": "高"}]}).json()
    control.tag_change("create", group_id=group["wecom_group_id"], tags=["低"])  # unknown here
    response = api.post(f"/tags/groups/{group['id']}/tags", {"name": "低"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "tag_name_taken" and error["details"]["errcode"] == 40071


def test_tags_are_renamed_reordered_and_deleted(api, tenant, shop):
    summer, promo = tag_named(tenant, "618"), tag_named(tenant, "双十一")
    assert api.patch(f"/tags/{summer.pk}", {"name": "年中大促"}).json()["name"] == "年中大促"
    reordered = api.post(
        f"/tags/groups/{shop['group'].pk}/reorder", {"ids": [summer.pk, promo.pk]}
    ).json()
    assert [t["name"] for t in reordered["tags"]] == ["年中大促", "双十一"]
    assert api.request("DELETE", f"/tags/{summer.pk}").status_code == 204
    assert api.get(f"/tags/{summer.pk}").status_code == 404
    assert [t["name"] for t in api.get("/tags").json()] == ["双十一"]


def test_a_sales_key_may_tag_customers_but_not_edit_the_library(api_as, tenant, shop):
    sales = api_as(tenant, staff=shop["mei"])
    response = sales.post("/tags/groups", {"name": "新组", "tags": [{"name": "x"}], "local": True})
    assert response.status_code == 403
    assert sales.request("DELETE", f"/tags/{tag_named(tenant, '618').pk}").status_code == 403
    tagged = sales.post(
        f"/customers/{shop['hers'].pk}/tags", {"tag_ids": [tag_named(tenant, "618").pk]}
    )
    assert tagged.status_code == 200


def test_a_read_only_key_cannot_write(api_as, tenant, shop):
    reader = api_as(tenant, ["customers:read"])
    promo = tag_named(tenant, "双十一").pk
    assert reader.get("/tags").status_code == 200
    assert reader.post(f"/customers/{shop['hers'].pk}/tags", {"tag_ids": [promo]}).status_code == (
        403
    )


# --- a customer's tags ----------------------------------------------------------------------------
def test_a_customers_tags_are_read_set_added_and_removed(api, tenant, shop):
    promo, summer = tag_named(tenant, "双十一").pk, tag_named(tenant, "618").pk
    url = f"/customers/{shop['hers'].pk}/tags"
    added = api.post(url, {"tag_ids": [promo]})
    assert added.status_code == 200 and [t["name"] for t in added.json()["tags"]] == ["双十一"]
    replaced = api.request("PUT", url, {"tag_ids": [summer]})
    assert [t["name"] for t in replaced.json()["tags"]] == ["618"]
    removed = api.request("DELETE", f"{url}/{summer}")
    assert removed.json()["tags"] == []
    assert api.get(url).json() == {"customer_id": shop["hers"].pk, "tags": []}


def test_unknown_tags_are_a_404_naming_them(api, tenant, shop):
    response = api.post(f"/customers/{shop['hers'].pk}/tags", {"tag_ids": [987654]})
    assert response.status_code == 404
    assert response.json()["error"]["details"] == {"tag_ids": [987654]}


def test_a_sales_key_cannot_see_or_tag_another_staffs_customer(api_as, tenant, shop):
    sales = api_as(tenant, staff=shop["mei"])
    url = f"/customers/{shop['not_hers'].pk}/tags"
    assert sales.get(url).status_code == 404
    assert sales.post(url, {"tag_ids": [tag_named(tenant, "618").pk]}).status_code == 404
    assert carried(tenant, shop["not_hers"]) == set()


# --- bulk tagging ---------------------------------------------------------------------------------
def test_bulk_tagging_starts_a_job_in_the_callers_scope(
    api_as, tenant, shop, django_capture_on_commit_callbacks
):
    sales = api_as(tenant, staff=shop["mei"])
    promo = tag_named(tenant, "双十一").pk
    with django_capture_on_commit_callbacks(execute=True):
        response = sales.post(
            "/customers/bulk-tag",
            {"add_tag_ids": [promo], "customer_ids": [shop["hers"].pk, shop["not_hers"].pk]},
        )
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["kind"] == "customers.bulk_tag" and job["status"] == "queued"
    progress = sales.get(f"/customers/bulk-tag/{job['id']}").json()
    assert progress["status"] == "succeeded" and progress["percent"] == 100
    assert progress["result"]["tagged"] == 1 and progress["result"]["skipped"] == 1
    assert carried(tenant, shop["hers"]) == {"双十一"}
    assert carried(tenant, shop["not_hers"]) == set()


def test_bulk_tagging_a_segment_or_rules(api, tenant, shop, django_capture_on_commit_callbacks):
    Customer.objects.for_tenant(tenant).filter(pk=shop["not_hers"].pk).update(city="上海")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/customers/bulk-tag",
            {"add_tag_ids": [tag_named(tenant, "618").pk], "rules": IN_SHANGHAI},
        )
    assert response.status_code == 202
    assert carried(tenant, shop["not_hers"]) == {"618"}
    assert carried(tenant, shop["hers"]) == set()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"add_tag_ids": [], "customer_ids": [1]}, 400),
        ({"add_tag_ids": ["promo"]}, 400),
        ({"add_tag_ids": ["promo"], "customer_ids": [1], "segment_id": 1}, 400),
        ({"add_tag_ids": [0], "customer_ids": [1]}, 422),
        ({"add_tag_ids": ["promo"], "segment_id": 424242}, 404),
        ({"add_tag_ids": ["promo"], "rules": {"op": "and", "conditions": "x"}}, 400),
    ],
)
def test_bad_bulk_requests_are_4xx(api, tenant, shop, body, status):
    promo = tag_named(tenant, "双十一").pk
    body = {**body, "add_tag_ids": [promo if t == "promo" else t for t in body["add_tag_ids"]]}
    response = api.post("/customers/bulk-tag", body)
    assert response.status_code == status, response.content
    assert not BackgroundJob.objects.for_tenant(tenant).exists()


def test_another_staffs_job_is_not_found(api_as, tenant, shop):
    job = tagging.start_bulk_tagging(
        system_actor(tenant), add=[tag_named(tenant, "618").pk], customer_ids=[shop["hers"].pk]
    )
    sales = api_as(tenant, staff=shop["mei"])
    assert sales.get(f"/customers/bulk-tag/{job.pk}").status_code == 404


# --- auto-tag rules -------------------------------------------------------------------------------
def test_auto_tag_rules_are_created_changed_run_and_deleted(api, tenant, shop):
    Customer.objects.for_tenant(tenant).filter(pk=shop["hers"].pk).update(city="上海")
    created = api.post(
        "/tags/auto-rules",
        {"name": "上海", "tag_id": tag_named(tenant, "618").pk, "rules": IN_SHANGHAI},
    )
    assert created.status_code == 201, created.content
    rule = created.json()
    changed = api.patch(f"/tags/auto-rules/{rule['id']}", {"remove_when_unmatched": True})
    assert changed.json()["remove_when_unmatched"] is True
    ran = api.post(f"/tags/auto-rules/{rule['id']}/run")
    assert ran.json() == {"rule_id": rule["id"], "tagged": 1, "untagged": 0, "skipped": False}
    assert api.get(f"/tags/auto-rules/{rule['id']}").json()["last_tagged"] == 1
    assert [r["name"] for r in api.get("/tags/auto-rules").json()] == ["上海"]
    assert api.request("DELETE", f"/tags/auto-rules/{rule['id']}").status_code == 204


def test_an_invalid_rule_is_a_400_naming_the_path(api, tenant, shop):
    response = api.post(
        "/tags/auto-rules",
        {
            "name": "坏",
            "tag_id": tag_named(tenant, "618").pk,
            "rules": {"op": "and", "conditions": [{"field": "city", "operator": "eq"}]},
        },
    )
    assert response.status_code == 400
    assert "conditions[0]" in str(response.json()["error"]["details"])


# --- another tenant -------------------------------------------------------------------------------
def test_another_tenant_can_neither_read_nor_change_these_tags(api_as, other_tenant, tenant, shop):
    theirs = api_as(other_tenant)
    promo = tag_named(tenant, "双十一")
    rule = api_as(tenant).post(
        "/tags/auto-rules", {"name": "上海", "tag_id": promo.pk, "rules": IN_SHANGHAI}
    )
    assert theirs.get("/tags/groups").json() == []
    assert theirs.get("/tags").json() == []
    assert theirs.get(f"/tags/{promo.pk}").status_code == 404
    assert theirs.patch(f"/tags/{promo.pk}", {"name": "改"}).status_code == 404
    assert theirs.request("DELETE", f"/tags/groups/{shop['group'].pk}").status_code == 404
    assert theirs.get(f"/customers/{shop['hers'].pk}/tags").status_code == 404
    url = f"/customers/{shop['hers'].pk}/tags"
    assert theirs.post(url, {"tag_ids": [promo.pk]}).status_code == 404
    assert theirs.post("/tags/auto-rules/{}/run".format(rule.json()["id"])).status_code == 404
    bulk = theirs.post(
        "/customers/bulk-tag", {"add_tag_ids": [promo.pk], "customer_ids": [shop["hers"].pk]}
    )
    assert bulk.status_code == 404  # their key cannot even name our tag
    promo.refresh_from_db()
    assert promo.name == "双十一" and carried(tenant, shop["hers"]) == set()
