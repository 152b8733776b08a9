"""Customer imports: every row checked first, nothing half-imported, a report of every bad
row; encodings and Excel; matching; tags and custom fields; rights and data scope."""

from __future__ import annotations

import io
from datetime import date, datetime

import pytest
from django.utils import translation
from openpyxl import Workbook

from siyu.core.errors import Forbidden, InvalidInput
from siyu.core.models import BackgroundJob, Event
from siyu.customers import imports
from siyu.customers.imports import import_customers, read_table, start_import
from siyu.customers.models import Customer
from siyu.customers.tests import support_io
from siyu.customers.tests.support_io import csv_bytes, customer_state, read_csv, run, staff_with
from siyu.tenancy import services

io_world = support_io.io_world  # fixtures
_media = support_io._media

HEADER = ["外部联系人ID", "姓名", "手机号", "生日", "城市", "标签", "会员级别", "积分", "肤质"]


@pytest.fixture(autouse=True)
def _reasons_in_english():
    """The report's reasons are compared in the source language; the translations of these
    messages are checked once, in ``test_the_report_speaks_the_console_language``."""
    with translation.override("en"):
        yield


@pytest.fixture
def system(io_world):
    return services.system_actor(io_world.tenant)


def start(actor, content: bytes, filename: str = "customers.csv", **options) -> BackgroundJob:
    return start_import(actor, filename=filename, content=content, **options)


# --- a good file ------------------------------------------------------------------------------
def test_a_good_file_updates_profiles_custom_fields_and_tags(io_world, system):
    # given: a CSV naming two customers by external_userid, with attributes, tags and fields
    content = csv_bytes(
        [
            HEADER,
            [
                "wm-alice",
                "Alice Chen",
                "+86 138-0000-0002",
                "1990/5/17",
                "杭州",
                "咖啡;茶",
                "黄金",
                "120",
                "干性;敏感",
            ],
            ["wm-bob", "", "", "1985年2月3日", "", "会员等级/金卡", "", "", ""],
        ]
    )

    # when: it is imported
    job = run(start(system, content))

    # then: the job succeeded with counts, and every value landed
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    assert job.result == {"rows": 2, "created": 0, "updated": 2, "unchanged": 0, "dry_run": False}
    assert (job.done, job.total) == (4, 4)  # checking and writing each row
    alice = io_world.refresh(io_world.alice)
    assert alice.custom["_display_name"] == "Alice Chen"
    assert alice.name == "Alice"  # WeCom's own name is left alone
    assert (alice.phone, alice.phone_verified) == ("13800000002", False)
    assert alice.birthday == date(1990, 5, 17)
    assert alice.city == "杭州"
    assert (alice.custom["level"], alice.custom["points"], alice.custom["skin"]) == (
        "黄金",
        120,
        ["干性", "敏感"],
    )
    assert io_world.tags_of(alice) == {"咖啡", "茶"}
    bob = io_world.refresh(io_world.bob)
    assert bob.birthday == date(1985, 2, 3)
    assert io_world.tags_of(bob) == {"金卡"}
    # and: the changes are on the customers' timelines
    types = set(
        Event.objects.for_tenant(io_world.tenant)
        .filter(customer_id=alice.pk)
        .values_list("type", flat=True)
    )
    assert {"customer.profile_updated", "customer.tagged"} <= types


def test_importing_the_same_file_twice_changes_nothing_the_second_time(io_world, system):
    content = csv_bytes([["external_userid", "city", "tags"], ["wm-bob", "苏州", "咖啡"]])
    assert run(start(system, content)).result["updated"] == 1
    events_before = Event.objects.for_tenant(io_world.tenant).count()

    again = run(start(system, content))

    assert again.result == {"rows": 1, "created": 0, "updated": 0, "unchanged": 1, "dry_run": False}
    assert Event.objects.for_tenant(io_world.tenant).count() == events_before


@pytest.mark.parametrize(
    ("header", "value", "matched"),
    [
        ("unionid", "union-alice", "alice"),
        ("手机号", "13800000001", "alice"),
        ("phone", "+86 138 0000 0001", "alice"),
        ("外部联系人ID", "wm-bob", "bob"),
    ],
)
def test_rows_find_existing_customers_by_external_userid_unionid_or_phone(
    io_world, system, header, value, matched
):
    content = csv_bytes([[header, "省份"], [value, "浙江"]])
    job = run(start(system, content))
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    assert io_world.refresh(getattr(io_world, matched)).province == "浙江"


def test_an_xlsx_file_with_excel_dates_and_numeric_phones(io_world, system):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["External userid", "Phone", "Birthday", "入会日期", "Points", "Gender"])
    sheet.append(["wm-bob", 13900000009, datetime(1992, 3, 4), date(2025, 12, 1), 7.5, "女"])
    buffer = io.BytesIO()
    workbook.save(buffer)

    job = run(start(system, buffer.getvalue(), "客户.xlsx"))

    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    bob = io_world.refresh(io_world.bob)
    assert bob.phone == "13900000009"
    assert bob.birthday == date(1992, 3, 4)
    assert bob.custom["joined"] == "2025-12-01"
    assert bob.custom["points"] == 7.5
    assert bob.gender == Customer.Gender.UNKNOWN  # WeCom's data: only set on new customers


@pytest.mark.parametrize(
    ("encoding", "prefix", "delimiter"),
    [
        ("utf-8", b"", ","),
        ("utf-8", b"\xef\xbb\xbf", ","),  # Excel's "CSV UTF-8"
        ("gbk", b"", ","),  # Excel in China: "CSV (逗号分隔)"
        ("gb18030", b"", ","),
        ("utf-16-le", b"\xff\xfe", "\t"),  # Excel's "Unicode text"
    ],
)
def test_csv_encodings_excel_writes(io_world, system, encoding, prefix, delimiter):
    content = prefix + csv_bytes(
        [["外部联系人ID", "城市", "标签"], ["wm-bob", "广州", "茶"]],
        encoding=encoding,
        delimiter=delimiter,
    )
    job = run(start(system, content))
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    bob = io_world.refresh(io_world.bob)
    assert bob.city == "广州"
    assert io_world.tags_of(bob) == {"茶"}


def test_a_file_in_an_unknown_encoding_is_refused(io_world, system):
    job = run(start(system, b"external_userid,city\nwm-bob,\xff\xfe\xfa\n"))
    assert job.status == BackgroundJob.Status.FAILED
    assert "UTF-8 or GBK" in job.error


def test_cells_guarded_against_formulas_are_read_back_plainly(io_world, system):
    content = csv_bytes([["external_userid", "备注信息"], ["wm-bob", "'=1+2"]])
    run(start(system, content))
    assert io_world.refresh(io_world.bob).custom["note"] == "=1+2"


# --- bad rows: nothing is imported, every problem is reported ------------------------------------
def test_a_file_with_bad_rows_imports_nothing_and_reports_every_bad_row(io_world, system):
    # given: a file whose good rows are mixed with rows that are each wrong in some way
    content = csv_bytes(
        [
            HEADER,
            ["wm-alice", "Alice", "", "", "杭州", "咖啡", "", "", ""],  # good
            ["wm-bob", "", "12345", "1990-13-01", "", "", "钻石", "many", ""],  # 4 bad cells
            ["wm-nobody", "", "", "", "", "", "", "", ""],  # unknown customer
            ["wm-carol", "", "", "", "", "奶茶;金卡", "", "", "油性;中性"],  # 2 bad cells
            ["wm-alice", "", "", "", "北京", "", "", "", ""],  # the same customer again
            ["", "", "", "", "深圳", "", "", "", ""],  # nothing to find the customer by
        ]
    )
    before = customer_state(io_world.tenant)

    # when: it is imported
    job = run(start(system, content))

    # then: nothing changed
    assert job.status == BackgroundJob.Status.FAILED
    assert customer_state(io_world.tenant) == before
    assert job.error == "9 problems in 5 rows: nothing was imported"
    # and: the report names each bad row, its column, the reason and the value, in file order
    assert [(e["row"], e["column"], e["reason"], e["value"]) for e in job.result["errors"]] == [
        (3, "手机号", "12345 is not a mobile phone number", "12345"),
        (3, "生日", "Not a date: write it like 2026-01-31", "1990-13-01"),
        (3, "会员级别", "会员级别 must be one of: 青铜, 白银, 黄金", "钻石"),
        (3, "积分", "积分 must be a number", "many"),
        (
            4,
            "外部联系人ID",
            "No customer with this external_userid among yours (sync from WeCom first)",
            "wm-nobody",
        ),
        (
            5,
            "标签",
            "Unknown tags: 奶茶 · Tags in several groups (write them as group/tag): 金卡",
            "奶茶;金卡",
        ),
        (5, "肤质", "肤质 must be among: 干性, 油性, 敏感", "油性;中性"),
        (6, "外部联系人ID", "The same customer as row 2", ""),
        (7, "", "No external_userid, unionid or phone to find the customer", ""),
    ]
    assert (job.result["error_count"], job.result["rows"]) == (9, 6)
    # and: the same report is the job's file, as a CSV Excel opens
    job.output_file.open("rb")
    report = read_csv(job.output_file.read())
    assert report[0] == ["row", "column", "reason", "value"]
    assert report[1] == ["3", "手机号", "12345 is not a mobile phone number", "12345"]
    assert len(report) == 10


def test_columns_the_import_does_not_know_fail_it_before_any_row(io_world, system):
    content = csv_bytes([["external_userid", "城市", "鞋码", "city"], ["wm-bob", "a", "42", "b"]])
    job = run(start(system, content))
    assert job.status == BackgroundJob.Status.FAILED
    assert job.error == "The columns of the file are not right: nothing was imported"
    assert [(e["row"], e["column"], e["reason"]) for e in job.result["errors"]] == [
        (1, "鞋码", "Unknown column: not a customer attribute or custom field"),
        (1, "city", "Repeats the column 城市"),
    ]
    assert "custom.level" in job.result["accepted_columns"]


def test_a_file_without_a_column_to_find_customers_is_refused(io_world, system):
    job = run(start(system, csv_bytes([["姓名", "城市"], ["Alice", "上海"]])))
    assert job.status == BackgroundJob.Status.FAILED
    assert job.result["errors"][0]["reason"] == (
        "A column to find each customer is needed: external_userid, unionid or phone"
    )


def test_exported_columns_about_siyus_own_state_are_accepted_and_left_alone(io_world, system):
    content = csv_bytes(
        [
            ["Siyu ID", "外部联系人ID", "负责人", "状态", "城市"],
            ["1", "wm-bob", "nobody", "x", "厦门"],
        ]
    )
    job = run(start(system, content))
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.result
    bob = io_world.refresh(io_world.bob)
    assert (bob.city, bob.owner_id, bob.status) == ("厦门", io_world.sales.pk, "active")


@pytest.mark.parametrize(
    ("limit", "value", "message"),
    [
        ("MAX_ROWS", 1, "The file has more than 1 rows: split it into several imports"),
        ("MAX_COLUMNS", 1, "The file has more than 1 columns"),
    ],
)
def test_files_over_the_limits_are_refused(io_world, system, monkeypatch, limit, value, message):
    monkeypatch.setattr(imports, limit, value)
    content = csv_bytes([["external_userid", "city"], ["wm-bob", "a"], ["wm-alice", "b"]])
    job = run(start(system, content))
    assert (job.status, job.error) == (BackgroundJob.Status.FAILED, message)


def test_a_too_large_or_empty_upload_is_refused_at_once(io_world, system, monkeypatch):
    monkeypatch.setattr(imports, "MAX_FILE_BYTES", 10)
    with pytest.raises(InvalidInput, match="larger than 0 MB"):
        start(system, b"external_userid\nwm-bob\n")
    with pytest.raises(InvalidInput, match="empty"):
        start(system, b"")
    monkeypatch.setattr(imports, "MAX_FILE_BYTES", 1000)
    with pytest.raises(InvalidInput, match=r"not an \.xlsx"):
        start(system, b"not a workbook", "customers.xlsx")
    assert BackgroundJob.objects.for_tenant(io_world.tenant).count() == 0


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", b"external_userid,city\n", b"external_userid,city\n,\n"],
    ids=["empty", "blank lines", "header only", "blank row"],
)
def test_files_without_rows(io_world, system, content):
    with pytest.raises(InvalidInput):
        import_customers(system, content, filename="x.csv")


def test_read_table_numbers_rows_as_a_spreadsheet_does(io_world):
    table = read_table("x.csv", b'a,b\n\n1,"two\nlines"\n3,4\n')
    assert table.headers == ["a", "b"]
    assert [number for number, _cells in table.rows] == [3, 4]


# --- new customers ------------------------------------------------------------------------------
def test_missing_customers_are_created_only_when_asked(io_world, system):
    content = csv_bytes(
        [
            ["外部联系人ID", "姓名", "性别", "unionid", "城市", "标签"],
            ["wm-new", "Dan", "男", "u-dan", "成都", "茶"],
        ]
    )
    refused = run(start(system, content))
    assert refused.status == BackgroundJob.Status.FAILED
    assert (
        not Customer.objects.for_tenant(io_world.tenant).filter(external_userid="wm-new").exists()
    )

    job = run(start(system, content, create_missing=True))

    assert job.result["created"] == 1
    dan = Customer.objects.for_tenant(io_world.tenant).get(external_userid="wm-new")
    assert (dan.name, dan.gender, dan.unionid, dan.city) == ("Dan", 1, "u-dan", "成都")
    assert io_world.tags_of(dan) == {"茶"}
    assert (
        Event.objects.for_tenant(io_world.tenant)
        .filter(type="customer.imported", customer_id=dan.pk, payload__job_id=job.pk)
        .exists()
    )


def test_a_row_without_external_userid_that_matches_nobody_is_never_created(io_world, system):
    content = csv_bytes([["手机号", "城市"], ["13911112222", "成都"]])
    job = run(start(system, content, create_missing=True))
    assert job.status == BackgroundJob.Status.FAILED
    assert job.result["errors"][0]["reason"].startswith("No customer found: a customer who is not")


def test_a_unionid_that_contradicts_wecom_is_an_error(io_world, system):
    content = csv_bytes([["external_userid", "unionid"], ["wm-alice", "union-someone-else"]])
    job = run(start(system, content))
    assert job.result["errors"][0]["reason"] == "Does not match the customer's unionid from WeCom"


def test_a_phone_several_customers_share_needs_the_external_userid(io_world, system):
    from siyu.customers import profiles

    profiles.update_profile(system, io_world.bob, phone="13800000001")
    job = run(start(system, csv_bytes([["手机号", "城市"], ["13800000001", "成都"]])))
    assert job.result["errors"][0]["reason"] == (
        "Several customers have this 手机号: give the external_userid"
    )


def test_a_dry_run_checks_everything_and_writes_nothing(io_world, system):
    content = csv_bytes([["external_userid", "city"], ["wm-bob", "拉萨"], ["wm-new", "x"]])
    before = customer_state(io_world.tenant)
    job = run(start(system, content, dry_run=True, create_missing=True))
    assert job.status == BackgroundJob.Status.SUCCEEDED
    assert job.result == {"rows": 2, "created": 1, "updated": 1, "unchanged": 0, "dry_run": True}
    assert "dry run" in job.label
    assert customer_state(io_world.tenant) == before


# --- rights and data scope ----------------------------------------------------------------------
def test_importing_needs_the_import_permission(io_world):
    viewer = staff_with(
        io_world.tenant, ["customers.view_*", "customers.change_customer"], userid="v1"
    )
    with pytest.raises(Forbidden, match=r"customers\.import_customer"):
        start(services.actor_for_staff(viewer), csv_bytes([["external_userid"], ["wm-bob"]]))


def test_a_staff_imports_into_their_own_customers_only(io_world):
    # given: a sales staff allowed to import, who owns alice and bob but not carol
    importer = staff_with(io_world.tenant, ["customers.*"], userid="importer", login=False)
    for customer in (io_world.alice, io_world.bob):
        Customer.objects.for_tenant(io_world.tenant).filter(pk=customer.pk).update(owner=importer)
    actor = services.actor_for_staff(importer)
    content = csv_bytes(
        [["external_userid", "city"], ["wm-alice", "a"], ["wm-carol", "c"], ["wm-new", "n"]]
    )

    job = run(start(actor, content))
    creating = run(start(actor, content, create_missing=True))

    # then: carol is "not found" for them, and they may not create customers
    not_found = "No customer with this external_userid among yours (sync from WeCom first)"
    assert [(e["row"], e["reason"]) for e in job.result["errors"]] == [
        (3, not_found),
        (4, not_found),
    ]
    may_not_create = "Only staff who see the whole tenant's customers may create customers"
    assert [(e["row"], e["reason"]) for e in creating.result["errors"]] == [
        (3, may_not_create),
        (4, may_not_create),
    ]
    assert io_world.refresh(io_world.carol).city == ""
    assert io_world.refresh(io_world.alice).city == "上海"


def test_the_import_runs_with_the_starters_rights(io_world):
    starter = staff_with(io_world.tenant, ["customers.*"], scope="tenant", userid="ops")
    job = start(
        services.actor_for_staff(starter),
        csv_bytes([["external_userid", "城市"], ["wm-bob", "西安"]]),
    )
    run(job)
    event = (
        Event.objects.for_tenant(io_world.tenant)
        .filter(type="customer.profile_updated", customer_id=io_world.bob.pk)
        .latest("id")
    )
    assert event.staff == starter


def test_the_report_speaks_the_console_language(io_world, system):
    # given a bad birthday, imported while the platform speaks its default language
    content = csv_bytes([["external_userid", "生日"], ["wm-alice", "1990-13-01"]])
    with translation.override("zh-hans"):
        # when
        job = run(start(system, content))
        expected = translation.gettext("Not a date: write it like 2026-01-31")
    # then the reason is the Chinese text, not the English source
    assert job.status == BackgroundJob.Status.FAILED
    assert expected != "Not a date: write it like 2026-01-31"
    assert [e["reason"] for e in job.result["errors"]] == [expected]
