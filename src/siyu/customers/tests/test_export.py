"""Customer exports: CSV with BOM and streamed XLSX, chosen columns with custom fields and
tags, the starter's data scope, masked phones, filters, and the round trip back in."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from siyu.core.errors import Forbidden, InvalidInput, NotFound
from siyu.core.models import AuditEntry, BackgroundJob
from siyu.customers import profiles, tagging
from siyu.customers.exports import ExportSelection, start_export
from siyu.customers.imports import start_import
from siyu.customers.io_columns import COLUMNS_BY_KEY, DEFAULT_EXPORT_COLUMNS
from siyu.customers.models import Customer
from siyu.customers.tests import support_io
from siyu.customers.tests.support_io import customer_state, read_csv, run, staff_with
from siyu.tenancy import services

io_world = support_io.io_world  # fixtures
_media = support_io._media


@pytest.fixture
def system(io_world):
    return services.system_actor(io_world.tenant)


@pytest.fixture
def decorated(io_world, system):
    """Alice with every kind of value, Bob with a tag, Carol untouched."""
    profiles.update_profile(
        system,
        io_world.alice,
        display_name="Alice C.",
        birthday="1990-05-17",
        age_band="25-34",
        province="上海",
        interests=["咖啡", "跑步"],
    )
    profiles.set_custom_values(
        system,
        io_world.alice,
        {"level": "黄金", "points": 120, "joined": "2025-12-01", "skin": ["干性", "敏感"]},
    )
    tagging.set_customer_tags(system, io_world.alice, add=[io_world.coffee, io_world.vip_gold])
    tagging.set_customer_tags(system, io_world.bob, add=[io_world.tea])
    return io_world


def output(job: BackgroundJob) -> bytes:
    job.output_file.open("rb")
    try:
        return job.output_file.read()
    finally:
        job.output_file.close()


def export_rows(actor, **selection) -> list[list[str]]:
    job = run(start_export(actor, {"format": "csv", **selection}))
    assert job.status == BackgroundJob.Status.SUCCEEDED, (job.error, job.result)
    return read_csv(output(job))


def label(key: str) -> str:
    """A built-in column's header in the active language."""
    return str(COLUMNS_BY_KEY[key].label)


def by_external_userid(rows: list[list[str]]) -> dict[str, list[str]]:
    index = rows[0].index(label("external_userid"))
    return {row[index]: row for row in rows[1:]}


# --- the file ----------------------------------------------------------------------------------
def test_a_csv_export_has_a_bom_the_chosen_columns_tags_and_custom_fields(decorated, system):
    columns = ["external_userid", "name", "phone", "birthday", "interests", "tags", "owner"]
    custom = ["custom.level", "custom.points", "custom.joined", "custom.skin"]
    rows = export_rows(system, columns=[*columns, "source_state", *custom])
    assert rows[0] == [
        *(label(key) for key in columns),
        label("source_state"),
        "会员级别",
        "积分",
        "入会日期",
        "肤质",
    ]
    assert by_external_userid(rows)["wm-alice"] == [
        "wm-alice",
        "Alice C.",
        "13800000001",
        "1990-05-17",
        "咖啡; 跑步",
        "咖啡; 会员等级/金卡",  # 金卡 is also a tag of another group
        f"{decorated.sales.name} (sales1)",
        "poster",
        "黄金",
        "120",
        "2025-12-01",
        "干性; 敏感",
    ]
    assert by_external_userid(rows)["wm-bob"][5] == "茶"
    assert len(rows) == 4  # header + alice, bob, carol


def test_the_headers_are_the_column_labels_in_the_starters_language(decorated, system):
    from django.utils import translation

    with translation.override("en"):
        job = start_export(
            system, {"format": "csv", "columns": ["external_userid", "city", "custom.level"]}
        )
    job = run(job)
    assert read_csv(output(job))[0] == ["External userid", "City", "会员级别"]


def test_an_export_without_columns_has_every_column_and_custom_field(decorated, system):
    rows = export_rows(system)
    assert rows[0] == [
        *(label(key) for key in DEFAULT_EXPORT_COLUMNS),
        "会员级别",
        "积分",
        "入会日期",
        "肤质",
        "备注信息",
    ]


def test_an_xlsx_export_is_a_workbook_with_typed_cells(decorated, system):
    job = run(
        start_export(
            system,
            {"format": "xlsx", "columns": ["id", "external_userid", "birthday", "custom.points"]},
        )
    )
    assert job.output_file.name.endswith(".xlsx")
    sheet = load_workbook(io.BytesIO(output(job)), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    alice = next(row for row in rows if row[1] == "wm-alice")
    assert alice[0] == decorated.alice.pk
    assert alice[2].date().isoformat() == "1990-05-17"
    assert alice[3] == 120
    assert (job.done, job.total, job.result) == (3, 3, {"rows": 3, "format": "xlsx", "columns": 4})


def test_text_that_looks_like_a_formula_stays_text(io_world, system):
    formula = '=HYPERLINK("http://x","y")'
    profiles.update_profile(system, io_world.bob, display_name=formula)
    columns = ["external_userid", "name"]
    rows = export_rows(system, columns=columns)
    assert by_external_userid(rows)["wm-bob"][1] == "'" + formula  # Excel shows it as text

    job = run(start_export(system, {"format": "xlsx", "columns": columns}))
    sheet = load_workbook(io.BytesIO(output(job))).worksheets[0]
    cell = next(row[1] for row in sheet.iter_rows() if row[0].value == "wm-bob")
    assert (cell.value, cell.data_type) == (formula, "s")


# --- whose customers ----------------------------------------------------------------------------
def test_a_sales_staffs_export_holds_only_their_customers(io_world):
    exporter = staff_with(
        io_world.tenant, ["customers.*", "core.export_data"], userid="exporter", login=False
    )
    Customer.objects.for_tenant(io_world.tenant).filter(pk=io_world.carol.pk).update(owner=exporter)
    rows = export_rows(services.actor_for_staff(exporter), columns=["external_userid"])
    assert rows[1:] == [["wm-carol"]]


def test_explicit_ids_are_narrowed_to_the_starters_customers(io_world):
    exporter = staff_with(io_world.tenant, ["customers.*", "core.export_data"], userid="exp2")
    Customer.objects.for_tenant(io_world.tenant).filter(pk=io_world.bob.pk).update(owner=exporter)
    ids = [io_world.alice.pk, io_world.bob.pk, io_world.carol.pk]
    rows = export_rows(
        services.actor_for_staff(exporter), customer_ids=ids, columns=["external_userid"]
    )
    assert rows[1:] == [["wm-bob"]]


def test_the_scope_is_the_one_the_starter_had_when_they_started(io_world, system):
    exporter = staff_with(io_world.tenant, ["customers.*", "core.export_data"], userid="exp3")
    job = start_export(services.actor_for_staff(exporter), {"format": "csv"})
    # when: the customers are handed to them before the job runs
    Customer.objects.for_tenant(io_world.tenant).update(owner=exporter)
    job = run(job)
    # then: the export still holds what their rights allowed (own customers: all now)
    assert len(read_csv(output(job))) == 4


def test_phones_are_masked_unless_the_starter_may_see_them(io_world):
    masked_staff = staff_with(
        io_world.tenant,
        ["customers.view_customer", "core.export_data"],
        scope="tenant",
        userid="m1",
    )
    seeing_staff = staff_with(
        io_world.tenant,
        ["customers.view_*", "customers.view_customer_phone", "core.export_data"],
        scope="tenant",
        userid="m2",
    )
    columns = ["external_userid", "phone"]
    masked = export_rows(services.actor_for_staff(masked_staff), columns=columns)
    shown = export_rows(services.actor_for_staff(seeing_staff), columns=columns)
    assert by_external_userid(masked)["wm-alice"][1] == "138****0001"
    assert by_external_userid(shown)["wm-alice"][1] == "13800000001"


def test_exporting_needs_the_export_permission(io_world):
    sales = staff_with(io_world.tenant, ["customers.*"], userid="noexport")
    with pytest.raises(Forbidden, match="export"):
        start_export(services.actor_for_staff(sales), {"format": "csv"})
    assert BackgroundJob.objects.for_tenant(io_world.tenant).count() == 0


def test_starting_an_export_is_in_the_audit_log(io_world, system):
    job = start_export(system, {"format": "csv", "customer_ids": [io_world.bob.pk]})
    entry = AuditEntry.objects.for_tenant(io_world.tenant).get(action="customers.export_started")
    assert (entry.object_id, entry.changes["selection"][1]["customer_ids"]) == (str(job.pk), 1)


# --- selections -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ({}, ["wm-alice", "wm-bob", "wm-carol"]),
        ({"status": "active"}, ["wm-alice", "wm-bob", "wm-carol"]),
        ({"status": "lost"}, []),
        ({"stage": ["new"]}, ["wm-alice", "wm-bob", "wm-carol"]),
        ({"stage": "churned"}, []),
        ({"channel": "poster"}, ["wm-alice"]),
        ({"q": "bob"}, ["wm-bob"]),
        ({"q": "Alice C."}, ["wm-alice"]),  # the brand's display name
        ({"q": "wm-carol"}, ["wm-carol"]),
        ({"q": "138 0000 0001"}, ["wm-alice"]),  # a phone number, by its fingerprint
        ({"owner": "other_sales"}, ["wm-carol"]),
        ({"tags": ["coffee", "tea"]}, ["wm-alice", "wm-bob"]),
        ({"tags": ["tea"], "q": "alice"}, []),
    ],
)
def test_the_customer_lists_filters_select_the_rows(decorated, system, selection, expected):
    selection = dict(selection)
    if "owner" in selection:
        selection["owner_id"] = getattr(decorated, selection.pop("owner")).pk
    if "tags" in selection:
        selection["tag_ids"] = [getattr(decorated, name).pk for name in selection.pop("tags")]
    rows = export_rows(system, columns=["external_userid"], **selection)
    assert sorted(row[0] for row in rows[1:]) == expected


def test_merged_away_customers_are_not_exported(io_world, system):
    Customer.objects.for_tenant(io_world.tenant).filter(pk=io_world.bob.pk).update(
        merged_into=io_world.alice
    )
    rows = export_rows(system, columns=["external_userid"])
    assert sorted(row[0] for row in rows[1:]) == ["wm-alice", "wm-carol"]


@pytest.mark.parametrize(
    ("selection", "problem"),
    [
        ({"format": "pdf"}, {"format": "pdf"}),
        ({"columns": ["external_userid", "shoe_size"]}, "columns"),
        ({"stage": ["sleeping"]}, {"stage": ["sleeping"]}),
        ({"owner_id": "x"}, {"owner_id": "x"}),
        ({"customer_ids": "1,2"}, {"customer_ids": "1,2"}),
        ({"segment_id": 1, "customer_ids": [1]}, {"sources": ["segment_id", "customer_ids"]}),
        ({"colour": "red"}, {"unknown": ["colour"]}),
        ({"q": "x" * 65}, "q"),
    ],
)
def test_a_bad_selection_is_refused_with_the_field_named(io_world, system, selection, problem):
    with pytest.raises(InvalidInput) as refused:
        start_export(system, selection)
    details = refused.value.details
    if isinstance(problem, str):
        assert problem in details
    else:
        assert {key: details[key] for key in problem} == problem
    assert BackgroundJob.objects.for_tenant(io_world.tenant).count() == 0


def test_an_unknown_segment_is_not_found(io_world, system):
    with pytest.raises(NotFound):
        start_export(system, {"segment_id": 999_999})


def test_the_selection_round_trips_through_the_jobs_params(io_world, system):
    selection = ExportSelection.from_dict({"stage": "new", "tag_ids": [3, 3, 1], "format": "CSV"})
    assert (selection.stage, selection.tag_ids, selection.format) == (["new"], [1, 3], "csv")
    assert ExportSelection(**selection.as_params()) == selection


# --- the round trip ------------------------------------------------------------------------------
@pytest.mark.parametrize("file_format", ["xlsx", "csv"])
def test_an_export_imports_back_unchanged_and_edits_apply(decorated, system, file_format):
    # given: a full export
    job = run(start_export(system, {"format": file_format}))
    content = output(job)
    before = customer_state(decorated.tenant)

    # when: it is imported as it is
    again = run(start_import(system, filename=f"back.{file_format}", content=content))

    # then: every row is found and nothing changes
    assert again.status == BackgroundJob.Status.SUCCEEDED, (again.error, again.result)
    assert again.result == {"rows": 3, "created": 0, "updated": 0, "unchanged": 3, "dry_run": False}
    assert customer_state(decorated.tenant) == before

    # when: a cell is edited in the workbook and imported
    if file_format == "xlsx":
        workbook = load_workbook(io.BytesIO(content))
        sheet = workbook.worksheets[0]
        header = [cell.value for cell in sheet[1]]
        city = header.index(label("city")) + 1
        for row in sheet.iter_rows(min_row=2):
            if row[1].value == "wm-bob":
                sheet.cell(row=row[0].row, column=city, value="重庆")
        buffer = io.BytesIO()
        workbook.save(buffer)
        edited = buffer.getvalue()
    else:
        rows = read_csv(content)
        city = rows[0].index(label("city"))
        for row in rows[1:]:
            if row[1] == "wm-bob":
                row[city] = "重庆"
        edited = b"\xef\xbb\xbf" + support_io.csv_bytes(rows)
    changed = run(start_import(system, filename=f"edited.{file_format}", content=edited))

    # then: only that customer changed
    assert changed.result["updated"] == 1, changed.result
    assert decorated.refresh(decorated.bob).city == "重庆"


# --- segments ------------------------------------------------------------------------------------
SHANGHAI = {"op": "and", "conditions": [{"field": "city", "operator": "eq", "value": "上海"}]}


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_a_segments_customers_are_exported(io_world, system, kind):
    from siyu.segments.services import create_segment

    segment = create_segment(system, name="上海客户", rules=SHANGHAI, kind=kind)
    rows = export_rows(system, segment_id=segment.pk, columns=["external_userid"])
    assert rows[1:] == [["wm-alice"]]


def test_ad_hoc_rules_select_the_customers(io_world, system):
    rows = export_rows(system, rules=SHANGHAI, columns=["external_userid", "city"])
    assert rows[1:] == [["wm-alice", "上海"]]


def test_a_segment_export_is_narrowed_to_the_starters_customers(io_world, system):
    from siyu.segments.services import create_segment

    everyone = {
        "op": "and",
        "conditions": [{"field": "status", "operator": "eq", "value": "active"}],
    }
    segment = create_segment(system, name="所有人", rules=everyone)
    exporter = staff_with(io_world.tenant, ["customers.*", "core.export_data"], userid="segexp")
    Customer.objects.for_tenant(io_world.tenant).filter(pk=io_world.carol.pk).update(owner=exporter)
    rows = export_rows(
        services.actor_for_staff(exporter), segment_id=segment.pk, columns=["external_userid"]
    )
    assert rows[1:] == [["wm-carol"]]


def test_bad_ad_hoc_rules_are_refused_with_their_path(io_world, system):
    with pytest.raises(InvalidInput) as refused:
        start_export(system, {"rules": {"op": "and", "conditions": [{"field": "shoe"}]}})
    assert "conditions[0]" in str(refused.value.details)
