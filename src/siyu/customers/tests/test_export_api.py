"""POST /customers/exports: a JSON selection that starts an export job (202); the columns."""

from __future__ import annotations

import pytest

from siyu.core.models import BackgroundJob
from siyu.customers.models import Customer
from siyu.customers.tests import support_io
from siyu.customers.tests.support_io import read_csv, run, staff_with

io_world = support_io.io_world  # fixtures
_media = support_io._media


def test_an_export_is_started_and_downloaded(api, io_world):
    response = api.post(
        "/customers/exports",
        {"format": "csv", "stage": ["new"], "columns": ["external_userid", "custom.level"]},
    )
    assert response.status_code == 202, response.content
    job = run(BackgroundJob.objects.for_tenant(io_world.tenant).get(pk=response.json()["id"]))
    download = api.get(api.get(f"/jobs/{job.pk}").json()["download_url"])
    rows = read_csv(b"".join(download.streaming_content))
    assert sorted(row[0] for row in rows[1:]) == ["wm-alice", "wm-bob", "wm-carol"]


def test_a_staff_keys_export_holds_only_their_customers(api_as, io_world):
    exporter = staff_with(io_world.tenant, ["customers.*", "core.export_data"], userid="exp")
    Customer.objects.for_tenant(io_world.tenant).filter(pk=io_world.carol.pk).update(owner=exporter)
    client = api_as(io_world.tenant, ["customers:export", "jobs:read"], staff=exporter)
    body = client.post(
        "/customers/exports",
        {"format": "csv", "customer_ids": [io_world.alice.pk, io_world.carol.pk]},
    ).json()
    run(BackgroundJob.objects.for_tenant(io_world.tenant).get(pk=body["id"]))
    download = client.get(f"/jobs/{body['id']}/download")
    rows = read_csv(b"".join(download.streaming_content))
    assert [row[1] for row in rows[1:]] == ["wm-carol"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"format": "pdf"}, 422),
        ({"stage": ["sleeping"]}, 422),
        ({"columns": ["shoe_size"]}, 400),
        ({"segment_id": 1, "customer_ids": [1]}, 400),
        ({"customer_ids": [0]}, 422),
        ({"segment_id": 987654}, 404),
    ],
)
def test_a_bad_selection_is_a_clear_4xx(api, io_world, body, status):
    response = api.post("/customers/exports", body)
    assert response.status_code == status, response.content
    assert "error" in response.json()
    assert not BackgroundJob.objects.for_tenant(io_world.tenant).exists()


def test_exporting_needs_the_scope_and_the_right(api_as, io_world):
    assert (
        api_as(io_world.tenant, ["customers:read"]).post("/customers/exports", {}).status_code
        == 403
    )
    sales = staff_with(io_world.tenant, ["customers.*"], userid="noexport")
    client = api_as(io_world.tenant, ["customers:export"], staff=sales)
    assert client.post("/customers/exports", {}).status_code == 403


def test_the_columns_an_export_can_hold(api, io_world):
    columns = api.get("/customers/exports/columns").json()
    keys = [column["key"] for column in columns]
    assert keys[:3] == ["id", "external_userid", "unionid"]
    assert {"key": "custom.level", "label": "会员级别"} in columns
