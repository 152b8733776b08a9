"""/api/v1/segments: CRUD, preview, members, sizes, fields, RFM; scopes, data scope and
tenant isolation."""

from __future__ import annotations

import pytest

from siyu.segments import rfm, services
from siyu.segments.models import Segment
from siyu.segments.tests.support_segments import NOW, build_population
from siyu.tenancy.services import system_actor

SHANGHAI = {"op": "and", "conditions": [{"field": "city", "operator": "contains", "value": "上海"}]}
EVERYONE: dict = {"op": "and", "conditions": []}


@pytest.fixture
def people(tenant):
    return build_population(tenant)


def error_of(response) -> dict:
    return response.json()["error"]


def test_create_get_list_patch_delete(api, people):
    # create
    response = api.post("/segments", {"name": "上海", "rules": SHANGHAI, "description": "沪"})
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["name"], created["kind"], created["count"], created["cached_count"]) == (
        "上海",
        "dynamic",
        2,
        2,
    )
    # get
    fetched = api.get(f"/segments/{created['id']}").json()
    assert (fetched["count"], fetched["rules"]) == (2, SHANGHAI)
    # list
    assert [row["name"] for row in api.walk("/segments")] == ["上海"]
    # patch
    patched = api.patch(f"/segments/{created['id']}", {"rules": EVERYONE, "name": "全部"}).json()
    assert (patched["name"], patched["count"]) == ("全部", 4)
    # delete
    assert api.request("DELETE", f"/segments/{created['id']}").status_code == 204
    assert api.get(f"/segments/{created['id']}").status_code == 404


def test_a_bad_rule_is_a_400_naming_the_path(api, people):
    rules = {
        "op": "and",
        "conditions": [
            SHANGHAI["conditions"][0],
            {"field": "tags", "operator": "has_any", "value": [0]},
        ],
    }
    response = api.post("/segments", {"name": "x", "rules": rules})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_rules"
    assert error["details"]["path"] == "conditions[1].value[0]"
    assert error["details"]["errors"] == [
        {"path": "conditions[1].value[0]", "message": error["details"]["message"]}
    ]


def test_a_taken_name_is_a_409(api, people):
    assert api.post("/segments", {"name": "A"}).status_code == 201
    assert api.post("/segments", {"name": "A"}).status_code == 409


def test_preview_counts_and_samples_without_saving(api, people):
    response = api.post("/segments/preview", {"rules": SHANGHAI, "sample_size": 1})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 2
    assert [c["name"] for c in body["sample"]] in (["Ann"], ["Dan"])
    assert not Segment.objects.for_tenant(people.tenant).exists()


def test_preview_without_customers_read_shows_no_sample(api_as, tenant, people):
    client = api_as(tenant, ["segments:read"])
    body = client.post("/segments/preview", {"rules": SHANGHAI}).json()
    assert (body["count"], body["sample"]) == (2, [])


def test_a_sales_key_counts_and_lists_only_its_own_customers(api, api_as, tenant, people):
    # given a segment of everyone, and a key acting as the sales staff s1 (owns ann and cat)
    segment_id = api.post("/segments", {"name": "all", "rules": EVERYONE}).json()["id"]
    sales = api_as(tenant, ["segments:read", "customers:read"], staff=people.s1)
    # then the count, the members and the preview are theirs only
    detail = sales.get(f"/segments/{segment_id}").json()
    assert (detail["count"], detail["cached_count"]) == (2, None)
    assert {c["name"] for c in sales.walk(f"/segments/{segment_id}/members")} == {"Ann", "Cat"}
    assert sales.post("/segments/preview", {"rules": EVERYONE}).json()["count"] == 2
    # and the tenant-wide history is not theirs to read
    assert sales.get(f"/segments/{segment_id}/sizes").status_code == 403


def test_members_are_cursor_paginated(api, people):
    segment_id = api.post("/segments", {"name": "all", "rules": EVERYONE}).json()["id"]
    first = api.get(f"/segments/{segment_id}/members", limit=3).json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    names = [c["name"] for c in api.walk(f"/segments/{segment_id}/members", limit=3)]
    assert names == ["Dan", "Cat", "Bob", "Ann"]  # newest first, eve (merged) never


def test_sizes_for_a_whole_tenant_caller(api, people):
    segment_id = api.post("/segments", {"name": "all", "rules": EVERYONE}).json()["id"]
    sizes = api.get(f"/segments/{segment_id}/sizes").json()
    assert [row["size"] for row in sizes] == [4]


def test_static_segments_are_rebuilt(api, people):
    created = api.post("/segments", {"name": "S", "kind": "static", "rules": SHANGHAI}).json()
    assert created["snapshot_at"] and created["count"] == 2
    response = api.post(f"/segments/{created['id']}/rebuild")
    assert response.status_code == 200
    assert response.json() == {"status": "done", "job_id": None, "members": 2}
    dynamic = api.post("/segments", {"name": "D", "rules": SHANGHAI}).json()
    assert api.post(f"/segments/{dynamic['id']}/rebuild").status_code == 400


def test_the_field_catalogue_includes_custom_fields(api, people):
    fields = {row["name"]: row for row in api.get("/segments/fields").json()}
    assert {"city", "tags", "groups", "owner", "event", "rfm.layer", "custom.skin"} <= set(fields)
    skin = fields["custom.skin"]
    assert (skin["kind"], [c["value"] for c in skin["choices"]]) == (
        "choice",
        ["dry", "oily", "normal"],
    )
    assert [op["operator"] for op in fields["tags"]["operators"]] == [
        "has_any",
        "has_all",
        "has_none",
        "is_empty",
        "is_not_empty",
    ]
    assert fields["tags"]["picker"] == "tags"


def test_rfm_layers_and_recompute(api, people):
    rfm.compute_rfm(people.tenant, now=NOW)
    layers = {row["layer"]: row["customers"] for row in api.get("/segments/rfm/layers").json()}
    assert sum(layers.values()) == 4
    assert api.post("/segments/rfm/recompute").status_code == 202


# --- rights ---------------------------------------------------------------------------------------
def test_writing_needs_the_write_scope(api_as, tenant, people):
    reader = api_as(tenant, ["segments:read"])
    response = reader.post("/segments", {"name": "x"})
    assert response.status_code == 403
    assert error_of(response)["details"] == {"required_scope": "segments:write"}


def test_a_sales_staff_may_not_create_segments(api_as, tenant, people):
    sales = api_as(tenant, ["segments:read", "segments:write"], staff=people.s1)
    assert sales.post("/segments", {"name": "x"}).status_code == 403


def test_members_need_customers_read(api, api_as, tenant, people):
    segment_id = api.post("/segments", {"name": "all"}).json()["id"]
    reader = api_as(tenant, ["segments:read"])
    assert reader.get(f"/segments/{segment_id}/members").status_code == 403


# --- tenant isolation -----------------------------------------------------------------------------
def test_another_tenant_cannot_read_or_change_our_segments(api, api_as, other_tenant, people):
    segment_id = api.post("/segments", {"name": "ours", "rules": SHANGHAI}).json()["id"]
    theirs = api_as(other_tenant)
    assert theirs.get(f"/segments/{segment_id}").status_code == 404
    assert theirs.patch(f"/segments/{segment_id}", {"name": "pwned"}).status_code == 404
    assert theirs.request("DELETE", f"/segments/{segment_id}").status_code == 404
    assert theirs.get(f"/segments/{segment_id}/members").status_code == 404
    assert theirs.get(f"/segments/{segment_id}/sizes").status_code == 404
    assert theirs.post(f"/segments/{segment_id}/rebuild").status_code == 404
    assert theirs.walk("/segments") == []
    # nor count our customers through our tag ids
    rules = {"conditions": [{"field": "tags", "operator": "has_any", "value": [people.vip.pk]}]}
    assert theirs.post("/segments/preview", {"rules": rules}).status_code == 400
    assert theirs.post("/segments/preview", {"rules": EVERYONE}).json()["count"] == 0
    assert Segment.objects.for_tenant(people.tenant).get(pk=segment_id).name == "ours"


def test_sales_key_cannot_see_another_sales_members_through_a_static_segment(
    api, api_as, tenant, people
):
    services.create_segment(system_actor(tenant), name="S", rules=EVERYONE, kind="static")
    segment_id = Segment.objects.for_tenant(tenant).get(name="S").pk
    sales = api_as(tenant, ["segments:read", "customers:read"], staff=people.s2)
    assert {c["name"] for c in sales.walk(f"/segments/{segment_id}/members")} == {"Bob"}
