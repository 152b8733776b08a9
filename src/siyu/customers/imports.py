"""Customer imports: a CSV or Excel file of customers and their attributes, as a background
job (``customers.import``) with a validation report.

All or nothing. The first pass reads and checks EVERY row — each cell, each customer it
names, each tag — and collects every problem (row, column, reason, value). If there is one,
nothing is written: the job fails with the whole report (its output file is the report as
CSV). Otherwise the second pass writes every row in ONE transaction, through the profile
and tagging services, so an import is either wholly there or not at all. One transaction
bounds the size of a file: ``MAX_ROWS`` rows, ``MAX_FILE_BYTES`` bytes (see
docs/import-export.md); the write phase cannot be cancelled midway and its progress shows
when it commits.

Which customer a row is. Siyu's customers are WeCom contacts (WeCom's ``external_userid``):
a row names one by ``external_userid``, or else by ``unionid`` or phone number (matched by
its fingerprint, never decrypting), among the customers the importer may see. A row that
matches nobody is an error, unless the import was asked to create missing customers AND the
row gives an ``external_userid`` (a contact WeCom knows but Siyu has not synced yet; the
next sync fills in the friendship and owner). A row with only a unionid or a phone that
matches nobody is always an error: Siyu does not keep people who are not WeCom contacts.

What a row changes. An empty cell changes nothing. ``name`` sets the brand's display name
(WeCom's own name comes from WeCom), ``phone`` the phone number (unverified), the profile
columns (birthday, age band, province, city, interests) and custom fields their values;
``tags`` ADDS the named tags (it never removes one). ``gender`` and ``unionid`` are WeCom's
data: they are written only on customers the import creates, and for existing customers a
unionid that contradicts the stored one is an error. Columns an export writes about Siyu's
own state (owner, stage, channel, dates) are accepted and left alone.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from siyu.core.errors import Forbidden, InvalidInput, ServiceError
from siyu.core.events import record_event
from siyu.core.jobs import Progress, job_actor, job_runner, start_job
from siyu.core.models import BackgroundJob
from siyu.core.scoping import DataScope
from siyu.customers import profiles
from siyu.customers.io_columns import (
    COLUMNS_BY_KEY,
    CUSTOM_PREFIX,
    MATCH_KEYS,
    TAG_GROUP_SEPARATOR,
    TAG_SEPARATORS,
    builtin_headers,
    custom_headers,
    guard_formula,
    normalise_header,
    unguard_formula,
)
from siyu.customers.models import AgeBand, Customer, CustomerTag, CustomField, Tag
from siyu.tenancy.actor import Actor

KIND = "customers.import"
IMPORT_PERMISSION = "customers.import_customer"
CHANGE_PERMISSION = "customers.change_customer"
# One transaction writes the whole file: these bound how long it holds the database.
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_ROWS = 50_000
MAX_COLUMNS = 200
VALUE_IN_REPORT = 100  # characters of a bad value repeated in the report
LOOKUP_CHUNK = 500
MAX_MERGE_HOPS = 5
XLSX_MAGIC = b"PK\x03\x04"
CUSTOMER_IMPORTED = "customer.imported"  # a customer created by an import (no WeCom add yet)
INVALID = "_invalid"  # in a cleaned row: the keys whose cells were bad (already reported)

GENDERS = {
    Customer.Gender.MALE: ("男", "male", "m", "1", "先生", "男性"),
    Customer.Gender.FEMALE: ("女", "female", "f", "2", "女士", "女性"),
    Customer.Gender.UNKNOWN: ("未知", "unknown", "0", "保密", "-"),
}
AGE_BAND_SPELLINGS = {
    AgeBand.UNDER_18: ("lt18", "<18", "under18", "18以下", "18岁以下", "未满18"),
    AgeBand.FROM_55: ("55+", "55以上", "55岁以上", "55andover", ">=55"),
}
DATE_PATTERNS = (
    re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


# --- starting an import ------------------------------------------------------------------------
def start_import(
    actor: Actor,
    *,
    filename: str,
    content: bytes,
    dry_run: bool = False,
    create_missing: bool = False,
    enqueue: bool = True,
) -> BackgroundJob:
    """Queue the import of ``content`` (a CSV or .xlsx file) for ``actor``.

    The file is checked for its size and readability here, so that an obviously wrong upload
    is refused at once; the rows are checked by the job.
    """
    require_import_rights(actor)
    filename, file_format = checked_upload(filename, content, "customers.csv")
    label = _("Import customers from %(file)s") % {"file": filename}
    if dry_run:
        label = _("Check customers in %(file)s (dry run)") % {"file": filename}
    return start_job(
        actor,
        KIND,
        label,
        params={
            "filename": filename,
            "format": file_format,
            "dry_run": bool(dry_run),
            "create_missing": bool(create_missing),
        },
        input_name=filename,
        input_content=content,
        enqueue=enqueue,
    )


def require_import_rights(actor: Actor) -> None:
    for permission in (IMPORT_PERMISSION, CHANGE_PERMISSION):
        if not actor.has_perm(permission):
            raise Forbidden(
                _("Your role does not allow this (needs '%(permission)s')")
                % {"permission": permission},
                details={"required_permission": permission},
            )


def checked_upload(filename: str, content: bytes, default_name: str) -> tuple[str, str]:
    """The upload's cleaned name and format, or ``InvalidInput`` for an empty or too large
    file (shared by every importer: customers, orders)."""
    filename = (filename or default_name).strip()[:100] or default_name
    if not content:
        raise InvalidInput(_("The file is empty"), details={"file": filename})
    if len(content) > MAX_FILE_BYTES:
        raise InvalidInput(
            _("The file is larger than %(limit)d MB: split it into several imports")
            % {"limit": MAX_FILE_BYTES // (1024 * 1024)},
            code="file_too_large",
            details={"file": filename, "bytes": len(content)},
        )
    return filename, detect_format(filename, content)


def detect_format(filename: str, content: bytes) -> str:
    """``xlsx`` or ``csv``, by the file's bytes (an .xlsx is a zip) and then its name."""
    if content.startswith(XLSX_MAGIC):
        return "xlsx"
    if filename.lower().endswith((".xls", ".xlsx", ".xlsm")):
        raise InvalidInput(
            _("This is not an .xlsx workbook: save it as .xlsx or as CSV"),
            code="unreadable_file",
            details={"file": filename},
        )
    return "csv"


# --- the job ---------------------------------------------------------------------------------
@job_runner(KIND)
def run_import(job: BackgroundJob, progress: Progress) -> dict[str, Any]:
    actor = job_actor(job)
    job.input_file.open("rb")
    try:
        content = job.input_file.read()
    finally:
        job.input_file.close()
    return import_customers(
        actor,
        content,
        filename=job.params.get("filename", ""),
        dry_run=bool(job.params.get("dry_run")),
        create_missing=bool(job.params.get("create_missing")),
        progress=progress,
        job_id=job.pk,
    )


def import_customers(
    actor: Actor,
    content: bytes,
    *,
    filename: str = "",
    dry_run: bool = False,
    create_missing: bool = False,
    progress: Progress | None = None,
    job_id: int | None = None,
) -> dict[str, Any]:
    """Check every row, then write them all in one transaction (or nothing: ``InvalidInput``
    whose details hold the report). Returns the counts for the job's result."""
    require_import_rights(actor)
    table = read_table(filename, content)
    context = ImportContext.load(actor, create_missing=create_missing)
    columns = map_columns(table.headers, context)
    if progress:
        progress.set_total(len(table.rows) * (1 if dry_run else 2))
    plans = plan_rows(table, columns, context, progress)
    if context.problems:
        report = sorted(context.problems, key=lambda p: p.row)  # stable: file order
        if progress:
            progress.save_output("import-errors.csv", report_csv(report))
        raise InvalidInput(
            _("%(count)d problems in %(rows)d rows: nothing was imported")
            % {"count": len(report), "rows": len({p.row for p in report})},
            code="import_invalid",
            details={
                "errors": [problem.as_dict() for problem in report],
                "error_count": len(report),
                "rows": len(table.rows),
            },
        )
    summary = {
        "rows": len(plans),
        "created": sum(1 for plan in plans if plan.customer is None),
        "updated": sum(1 for plan in plans if plan.customer is not None and plan.changes),
        "unchanged": sum(1 for plan in plans if plan.customer is not None and not plan.changes),
        "dry_run": dry_run,
    }
    if dry_run:
        return summary
    write_rows(actor, plans, context, progress, job_id=job_id)
    return summary


# --- reading the file -------------------------------------------------------------------------
@dataclass
class Table:
    headers: list[str]
    rows: list[tuple[int, list[Any]]]  # (row number in the file, cells)


def read_table(filename: str, content: bytes) -> Table:
    """The header row and the non-blank rows of a CSV or .xlsx file (row numbers as a
    spreadsheet shows them: the header is row 1)."""
    rows = _xlsx_rows(content) if detect_format(filename, content) == "xlsx" else _csv_rows(content)
    headers: list[str] | None = None
    data: list[tuple[int, list[Any]]] = []
    for number, cells in rows:
        if not any(_blank(cell) is False for cell in cells):
            continue
        if headers is None:
            headers = ["" if cell is None else str(cell).strip() for cell in cells]
            if len(headers) > MAX_COLUMNS:
                raise InvalidInput(
                    _("The file has more than %(limit)d columns") % {"limit": MAX_COLUMNS},
                    details={"columns": len(headers)},
                )
            continue
        if len(data) >= MAX_ROWS:
            raise InvalidInput(
                _("The file has more than %(limit)d rows: split it into several imports")
                % {"limit": MAX_ROWS},
                code="file_too_large",
                details={"rows_limit": MAX_ROWS},
            )
        data.append((number, cells))
    if headers is None:
        raise InvalidInput(_("The file has no header row"), code="import_invalid")
    if not data:
        raise InvalidInput(_("The file has a header but no rows"), code="import_invalid")
    return Table(headers, data)


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def decode_csv(content: bytes) -> str:
    """The text of a CSV: UTF-8 (with or without BOM), UTF-16 (Excel's "Unicode text"), or
    GB18030 (a superset of GBK, which Excel in China writes)."""
    if content.startswith(b"\xef\xbb\xbf"):
        return content[3:].decode("utf-8", errors="strict")
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16")
    for encoding in ("utf-8", "gb18030"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(
        _("The file's text encoding is not UTF-8 or GBK: save it as CSV UTF-8 or .xlsx"),
        code="unreadable_file",
    )


def _csv_rows(content: bytes) -> Iterator[tuple[int, list[Any]]]:
    text = decode_csv(content)
    first_line = text.split("\n", 1)[0]
    delimiter = max(",\t;", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        yield from enumerate(reader, start=1)
    except csv.Error as error:
        raise InvalidInput(
            _("The CSV file cannot be read: %(error)s") % {"error": error},
            code="unreadable_file",
        ) from error


def _xlsx_rows(content: bytes) -> Iterator[tuple[int, list[Any]]]:
    """Rows of the first sheet, streamed (openpyxl's read-only mode)."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds for a broken file
        raise InvalidInput(
            _("The Excel file cannot be read: save it again as .xlsx"),
            code="unreadable_file",
        ) from error
    try:
        sheet = workbook.worksheets[0]
        for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, list(cells)
    finally:
        workbook.close()


# --- what the importer may touch ----------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    row: int
    column: str
    reason: str
    value: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason, "value": self.value}


@dataclass
class ImportContext:
    """What validation needs, loaded once: the actor's customers are looked up in batches."""

    actor: Actor
    create_missing: bool
    custom_fields: dict[str, CustomField]
    tags_by_name: dict[str, list[Tag]]
    tags_by_group_and_name: dict[tuple[str, str], Tag]
    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def load(cls, actor: Actor, *, create_missing: bool) -> ImportContext:
        tags = Tag.objects.for_tenant(actor.tenant).filter(deleted=False).select_related("group")
        by_name: dict[str, list[Tag]] = {}
        by_group: dict[tuple[str, str], Tag] = {}
        for tag in tags:
            by_name.setdefault(tag.name, []).append(tag)
            by_group[(tag.group.name, tag.name)] = tag
        return cls(
            actor=actor,
            create_missing=create_missing,
            custom_fields={f.key: f for f in profiles.custom_fields(actor.tenant)},
            tags_by_name=by_name,
            tags_by_group_and_name=by_group,
        )

    def report(self, row: int, column: str, reason: Any, value: Any = "") -> None:
        shown = "" if value is None else str(value)
        self.problems.append(Problem(row, column, str(reason), shown[:VALUE_IN_REPORT]))


@dataclass(frozen=True)
class ColumnMap:
    """Which file column (index, header as written) feeds which target key."""

    targets: dict[str, tuple[int, str]]


def map_columns(headers: list[str], context: ImportContext) -> ColumnMap:
    """Recognise each header; unknown, repeated or missing key columns are errors of row 1
    (reported at once: no row can be read without its columns)."""
    known = {**builtin_headers(), **custom_headers(list(context.custom_fields.values()))}
    targets: dict[str, tuple[int, str]] = {}
    header_problems: list[Problem] = []
    for index, header in enumerate(headers):
        if not header:
            continue  # an unnamed column (often an empty one Excel kept): ignored
        key = known.get(normalise_header(header))
        if key is None:
            header_problems.append(
                Problem(1, header, _("Unknown column: not a customer attribute or custom field"))
            )
        elif key in targets:
            header_problems.append(
                Problem(
                    1,
                    header,
                    _("Repeats the column %(other)s") % {"other": targets[key][1]},
                )
            )
        else:
            targets[key] = (index, header)
    if not any(key in targets for key in MATCH_KEYS):
        header_problems.append(
            Problem(
                1,
                "",
                _("A column to find each customer is needed: external_userid, unionid or phone"),
            )
        )
    if header_problems:
        raise InvalidInput(
            _("The columns of the file are not right: nothing was imported"),
            code="import_invalid",
            details={
                "errors": [problem.as_dict() for problem in header_problems],
                "error_count": len(header_problems),
                "accepted_columns": accepted_columns(context),
            },
        )
    return ColumnMap(targets)


def accepted_columns(context: ImportContext) -> list[str]:
    """The column names an import understands (for the message of a wrong header)."""
    names = [key for key, column in COLUMNS_BY_KEY.items() if column.importable]
    return names + [f"{CUSTOM_PREFIX}{key}" for key in context.custom_fields]


# --- checking rows ---------------------------------------------------------------------------
@dataclass
class RowPlan:
    """What one valid row will do."""

    row: int
    customer: Customer | None  # None: to be created
    external_userid: str = ""
    creation: dict[str, Any] = field(default_factory=dict)  # name, gender, unionid when creating
    profile: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    tags: list[Tag] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.profile or self.custom or self.tags or self.customer is None)


def plan_rows(
    table: Table, columns: ColumnMap, context: ImportContext, progress: Progress | None
) -> list[RowPlan]:
    """Check every row (all of them, whatever the number of problems) and plan its writes."""
    cleaned_rows = [
        (number, _clean_row(number, cells, columns, context)) for number, cells in table.rows
    ]
    customers = CustomerIndex.load(context.actor, [values for _n, values in cleaned_rows])
    plans: list[RowPlan] = []
    claimed: dict[int | str, int] = {}  # customer id or new external_userid → first row
    for number, values in cleaned_rows:
        plan = _plan_row(number, values, columns, customers, context)
        if plan is not None:
            identity: int | str = plan.customer.pk if plan.customer else plan.external_userid
            if identity in claimed:
                context.report(
                    number,
                    _header_of(columns, values),
                    _("The same customer as row %(row)d") % {"row": claimed[identity]},
                )
            else:
                claimed[identity] = number
                plans.append(plan)
        if progress:
            progress.advance()
    _drop_carried_tags(context, plans)
    return plans


def _drop_carried_tags(context: ImportContext, plans: list[RowPlan]) -> None:
    """Tags a customer already carries are no change (so a re-import is a no-op)."""
    existing = [plan for plan in plans if plan.customer is not None and plan.tags]
    carried: set[tuple[int, int]] = set()
    links = CustomerTag.objects.for_tenant(context.actor.tenant)
    for start in range(0, len(existing), LOOKUP_CHUNK):
        ids = [plan.customer.pk for plan in existing[start : start + LOOKUP_CHUNK]]
        carried |= set(links.filter(customer_id__in=ids).values_list("customer_id", "tag_id"))
    for plan in existing:
        plan.tags = [tag for tag in plan.tags if (plan.customer.pk, tag.pk) not in carried]


def _header_of(columns: ColumnMap, values: dict[str, Any]) -> str:
    for key in MATCH_KEYS:
        if values.get(key):
            return columns.targets[key][1]
    return ""


def _cell_text(cell: Any) -> str:
    """A cell as text: Excel's numbers without a trailing ".0", dates as ISO dates."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "1" if cell else "0"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == datetime.min.time() else cell.isoformat()
    if isinstance(cell, date):
        return cell.isoformat()
    return unguard_formula(str(cell).strip())


def _clean_row(
    number: int, cells: list[Any], columns: ColumnMap, context: ImportContext
) -> dict[str, Any]:
    """The row's non-empty values, cleaned; each bad cell is reported and left out."""
    values: dict[str, Any] = {INVALID: set()}
    for key, (index, header) in columns.targets.items():
        raw = cells[index] if index < len(cells) else None
        text = _cell_text(raw)
        if not text:
            continue
        column = COLUMNS_BY_KEY.get(key)
        if column is not None and not column.importable:
            continue  # Siyu's own state, written by an export: accepted, left alone
        try:
            values[key] = _clean_value(key, raw, text, context)
        except InvalidInput as error:
            context.report(number, header, error.message, text)
            values[INVALID].add(key)
    return values


def _clean_value(key: str, raw: Any, text: str, context: ImportContext) -> Any:
    if key == "external_userid":
        if len(text) > 64 or any(ch.isspace() for ch in text):
            raise InvalidInput(_("An external_userid is 1 to 64 characters without spaces"))
        return text
    if key == "unionid":
        if len(text) > 64:
            raise InvalidInput(_("A unionid is at most 64 characters"))
        return text
    if key == "name":
        if len(text) > profiles.DISPLAY_NAME_MAX:
            raise InvalidInput(
                _("A name is at most %(limit)d characters") % {"limit": profiles.DISPLAY_NAME_MAX}
            )
        return text
    if key == "phone":
        return profiles.normalise_phone(text)
    if key == "gender":
        return parse_gender(text)
    if key == "birthday":
        return profiles.clean_profile({"birthday": parse_day(raw, text)})["birthday"]
    if key == "age_band":
        return parse_age_band(text)
    if key in ("province", "city", "interests"):
        return profiles.clean_profile({key: text})[key]
    if key == "tags":
        return resolve_tags(text, context)
    if key.startswith(CUSTOM_PREFIX):
        custom_field = context.custom_fields[key[len(CUSTOM_PREFIX) :]]
        value: Any = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else text
        if custom_field.type == CustomField.Type.DATE:
            value = parse_day(raw, text)
        return profiles.clean_custom_value(custom_field, value)
    raise InvalidInput(_("Unknown column"))  # unreachable: map_columns knows every key


def parse_gender(text: str) -> int:
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    for gender, spellings in GENDERS.items():
        if folded in spellings:
            return int(gender)
    raise InvalidInput(_("Gender is 男, 女 or 未知 (male, female, unknown)"))


def parse_age_band(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    folded = re.sub(r"[–—~～至]", "-", folded).replace("岁", "").replace(" ", "")
    for band, spellings in AGE_BAND_SPELLINGS.items():
        if folded in spellings:
            return band.value
    labels: dict[str, str] = {}
    for band in AgeBand:
        labels[band.value] = band.value
        for language in ("en", "zh-hans"):
            with translation.override(language):
                label = re.sub(r"[–—]", "-", str(band.label)).replace(" ", "").lower()
            labels[label] = band.value
    if folded in labels:
        return labels[folded]
    raise InvalidInput(
        _("Unknown age band: use one of %(choices)s") % {"choices": ", ".join(AgeBand.values)}
    )


def parse_day(raw: Any, text: str) -> date:
    """A date from an Excel date cell or text: 2026-01-31, 2026/1/31, 2026年1月31日, 20260131."""
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    folded = unicodedata.normalize("NFKC", text).strip()
    for pattern in DATE_PATTERNS:
        match = pattern.match(folded)
        if match:
            try:
                return date(*(int(part) for part in match.groups()))
            except ValueError:
                break
    raise InvalidInput(_("Not a date: write it like 2026-01-31"))


def resolve_tags(text: str, context: ImportContext) -> list[Tag]:
    """Tags named in a cell (``;``-separated names, or ``group/name`` where a name is in
    several groups); every unknown or ambiguous name is one problem."""
    names = [name.strip() for name in TAG_SEPARATORS.split(text) if name.strip()]
    found: list[Tag] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for name in names:
        tag = _tag_named(name, context)
        if tag is None:
            (ambiguous if len(context.tags_by_name.get(name, ())) > 1 else unknown).append(name)
        elif tag not in found:
            found.append(tag)
    reasons = []
    if unknown:
        reasons.append(_("Unknown tags: %(names)s") % {"names": "; ".join(unknown)})
    if ambiguous:
        reasons.append(
            _("Tags in several groups (write them as group/tag): %(names)s")
            % {"names": "; ".join(ambiguous)}
        )
    if reasons:
        raise InvalidInput(" · ".join(reasons))
    return found


def _tag_named(name: str, context: ImportContext) -> Tag | None:
    same_name = context.tags_by_name.get(name, [])
    if len(same_name) == 1:
        return same_name[0]
    if TAG_GROUP_SEPARATOR in name:
        group, _sep, tag_name = name.rpartition(TAG_GROUP_SEPARATOR)
        return context.tags_by_group_and_name.get((group.strip(), tag_name.strip()))
    return None


# --- finding each row's customer -----------------------------------------------------------------
@dataclass
class CustomerIndex:
    """The actor's customers the file names, found in a few batched queries."""

    by_external_userid: dict[str, Customer]
    by_unionid: dict[str, list[Customer]]
    by_phone_hash: dict[str, list[Customer]]

    @classmethod
    def load(cls, actor: Actor, rows: list[dict[str, Any]]) -> CustomerIndex:
        visible = Customer.objects.for_actor(actor).select_related("merged_into")
        external_userids = {row["external_userid"] for row in rows if row.get("external_userid")}
        unionids = {row["unionid"] for row in rows if row.get("unionid")}
        hashes = {profiles.phone_hash(row["phone"]) for row in rows if row.get("phone")}
        by_external: dict[str, Customer] = {}
        for customer in _in_chunks(visible, "external_userid", external_userids):
            by_external[customer.external_userid] = customer
        by_unionid: dict[str, list[Customer]] = {}
        for customer in _in_chunks(visible.filter(merged_into__isnull=True), "unionid", unionids):
            by_unionid.setdefault(customer.unionid, []).append(customer)
        by_phone: dict[str, list[Customer]] = {}
        for customer in _in_chunks(visible.filter(merged_into__isnull=True), "phone_hash", hashes):
            by_phone.setdefault(customer.phone_hash, []).append(customer)
        return cls(by_external, by_unionid, by_phone)


def _in_chunks(queryset: Any, field_name: str, values: Iterable[str]) -> Iterator[Customer]:
    ordered = sorted(values)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start : start + LOOKUP_CHUNK]
        yield from queryset.filter(**{f"{field_name}__in": chunk})


def _plan_row(
    number: int,
    values: dict[str, Any],
    columns: ColumnMap,
    customers: CustomerIndex,
    context: ImportContext,
) -> RowPlan | None:
    """The row's customer and writes, or None (with problems reported) when it has none."""
    header = {key: columns.targets[key][1] for key in columns.targets}
    if values[INVALID] & set(MATCH_KEYS) and not values.get("external_userid"):
        return None  # the cell that would find the customer is bad (already reported)
    external_userid = values.get("external_userid", "")
    customer: Customer | None = None
    if external_userid:
        customer = customers.by_external_userid.get(external_userid)
        for _hop in range(MAX_MERGE_HOPS):
            if customer is None or not customer.merged_into_id:
                break
            customer = customer.merged_into  # the record it was merged into carries on
        if customer is None and not context.create_missing:
            context.report(
                number,
                header["external_userid"],
                _("No customer with this external_userid among yours (sync from WeCom first)"),
                external_userid,
            )
            return None
        if customer is None and context.actor.data_scope != DataScope.TENANT:
            context.report(
                number,
                header["external_userid"],
                _("Only staff who see the whole tenant's customers may create customers"),
                external_userid,
            )
            return None
    else:
        customer = _match_without_external_userid(number, values, header, customers, context)
        if customer is None:
            return None
    stored_unionid = customer.unionid if customer is not None else ""
    if values.get("unionid") and stored_unionid and values["unionid"] != stored_unionid:
        context.report(
            number,
            header["unionid"],
            _("Does not match the customer's unionid from WeCom"),
            values["unionid"],
        )
        return None
    return _row_plan(number, customer, external_userid, values)


def _match_without_external_userid(
    number: int,
    values: dict[str, Any],
    header: dict[str, str],
    customers: CustomerIndex,
    context: ImportContext,
) -> Customer | None:
    for key, index in (
        ("unionid", customers.by_unionid),
        ("phone", customers.by_phone_hash),
    ):
        value = values.get(key)
        if not value:
            continue
        found = index.get(profiles.phone_hash(value) if key == "phone" else value, [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            context.report(
                number,
                header[key],
                _("Several customers have this %(column)s: give the external_userid")
                % {"column": header[key]},
                value,
            )
            return None
    if not any(values.get(key) for key in MATCH_KEYS):
        context.report(number, "", _("No external_userid, unionid or phone to find the customer"))
        return None
    present = [key for key in ("unionid", "phone") if values.get(key)]
    context.report(
        number,
        header[present[0]],
        _(
            "No customer found: a customer who is not a WeCom contact needs an "
            "external_userid (import enriches WeCom contacts)"
        ),
        values[present[0]],
    )
    return None


def _row_plan(
    number: int, customer: Customer | None, external_userid: str, values: dict[str, Any]
) -> RowPlan:
    plan = RowPlan(row=number, customer=customer, external_userid=external_userid)
    if customer is None:
        plan.creation = {
            "name": values.get("name", ""),
            "gender": values.get("gender", Customer.Gender.UNKNOWN),
            "unionid": values.get("unionid", ""),
        }
    for key in ("birthday", "age_band", "province", "city", "interests", "phone"):
        if key in values and (customer is None or getattr(customer, key) != values[key]):
            plan.profile[key] = values[key]
    if (
        "name" in values
        and customer is not None
        and values["name"] != profiles.display_name(customer)
    ):
        plan.profile["display_name"] = values["name"]
    for key, value in values.items():
        if key != INVALID and key.startswith(CUSTOM_PREFIX):
            custom_key = key[len(CUSTOM_PREFIX) :]
            stored = (customer.custom or {}).get(custom_key) if customer else None
            if stored != value:
                plan.custom[custom_key] = value
    plan.tags = list(values.get("tags", []))
    return plan


# --- writing -------------------------------------------------------------------------------------
def write_rows(
    actor: Actor,
    plans: list[RowPlan],
    context: ImportContext,
    progress: Progress | None,
    *,
    job_id: int | None,
) -> None:
    """Write every planned row in one transaction, through the customers' services."""
    with transaction.atomic():
        for plan in plans:
            try:
                _write_row(actor, plan, job_id)
            except ServiceError as error:
                # Validation passed, so this is a change made meanwhile (a customer merged
                # away, a field deactivated): roll everything back and say which row.
                raise InvalidInput(
                    _("Row %(row)d could not be written (%(error)s): nothing was imported")
                    % {"row": plan.row, "error": error.message},
                    code="import_invalid",
                    details={
                        "errors": [Problem(plan.row, "", error.message).as_dict()],
                        "error_count": 1,
                    },
                ) from error
            if progress:
                progress.advance()
        if progress:
            progress.check_cancelled()


def _write_row(actor: Actor, plan: RowPlan, job_id: int | None) -> None:
    from siyu.customers.services import upsert_customer

    customer = plan.customer
    if customer is None:
        customer, _created = upsert_customer(
            actor.tenant,
            external_userid=plan.external_userid,
            source="import",
            **plan.creation,
        )
        record_event(
            actor.tenant,
            CUSTOMER_IMPORTED,
            key=f"{CUSTOMER_IMPORTED}:{customer.pk}",
            staff=actor.staff,
            customer_id=customer.pk,
            payload={"external_userid": customer.external_userid, "job_id": job_id},
            source=actor.channel,
        )
    if plan.profile:
        profiles.update_profile(actor, customer, **plan.profile)
    if plan.custom:
        profiles.set_custom_values(actor, customer, plan.custom)
    if plan.tags:
        add_tags(actor, customer, plan.tags)


def add_tags(actor: Actor, customer: Customer, tags: list[Tag]) -> None:
    """Put tags on a customer through the tagging service (which records the events and
    mirrors WeCom tags to every friendship once the import commits)."""
    from siyu.customers import tagging

    tagging.set_customer_tags(actor, customer, add=tags, via="import")


# --- the report ----------------------------------------------------------------------------------
REPORT_HEADERS = (
    gettext_lazy("row"),
    gettext_lazy("column"),
    gettext_lazy("reason"),
    gettext_lazy("value"),
)


def report_csv(problems: list[Problem]) -> bytes:
    """The validation report as a CSV Excel opens (UTF-8 with BOM)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([str(header) for header in REPORT_HEADERS])
    for problem in problems:
        writer.writerow(
            [
                problem.row,
                guard_formula(problem.column),
                problem.reason,
                guard_formula(problem.value),
            ]
        )
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")
