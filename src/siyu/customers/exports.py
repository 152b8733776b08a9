"""Customer exports: any customer list selection or a segment, as CSV or Excel, as a
background job (``customers.export``) with a progress bar.

Whose customers. ALWAYS the starter's: the job runs with the rights its starter had when
they started it (``siyu.core.jobs.job_actor``), so a sales staff's export holds the
customers they own, whatever the selection says and whenever the worker runs it. Phone
numbers are masked unless the starter may see them (``customers.view_customer_phone``).
Exporting needs ``core.export_data``.

What is selected (``ExportSelection``): a segment (``siyu.segments.services
.resolve_audience``: a static segment's members, a dynamic one's rules), ad-hoc rules,
explicit customer ids, or the whole list — narrowed by the filters of the console's
customer list (stage, owner, tag, channel, status, search). Customers merged into another
record are never exported (their survivor is).

The file. CSV is UTF-8 with a BOM (so that Excel in China opens it without garbling), XLSX
is written by openpyxl's write-only mode; both are streamed to a temporary file chunk by
chunk (``CHUNK`` customers, one query for them and one for their tags) and never held in
memory. Text that Excel would run as a formula (``=``, ``+``, ``-``, ``@``) is written with
a leading apostrophe in CSV and as a plain-text cell in XLSX. Headers are the columns'
labels in the starter's language, which an import reads back (``siyu.customers.io_columns``).

The file is the job's output: downloadable by its starter and administrators only, through
``siyu.core.job_views`` (never a public URL), and deleted after seven days.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from siyu.core.audit import record_audit
from siyu.core.errors import Forbidden, InvalidInput
from siyu.core.jobs import Progress, job_actor, job_runner, start_job
from siyu.core.models import BackgroundJob
from siyu.customers import profiles
from siyu.customers.io_columns import (
    COLUMNS_BY_KEY,
    CUSTOM_PREFIX,
    DEFAULT_EXPORT_COLUMNS,
    custom_header,
    guard_formula,
    tag_label,
)
from siyu.customers.models import (
    Customer,
    CustomerTag,
    CustomField,
    Follow,
    LifecycleStage,
    Tag,
)
from siyu.tenancy.actor import Actor

KIND = "customers.export"
EXPORT_PERMISSION = "core.export_data"
FORMATS = ("csv", "xlsx")
CHUNK = 1000
MAX_IDS = 100_000  # explicit customer ids in one selection (a console "select all" included)
SEARCH_MAX = 64
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


# --- the selection -----------------------------------------------------------------------------
@dataclass
class ExportSelection:
    """Which customers, which columns, which format: what the API, the console and the CLI
    send (stored in the job's params as a plain dict)."""

    segment_id: int | None = None
    rules: dict[str, Any] | None = None
    customer_ids: list[int] | None = None
    stage: list[str] = field(default_factory=list)
    owner_id: int | None = None
    tag_ids: list[int] = field(default_factory=list)
    channel: str = ""
    status: str = ""
    q: str = ""
    columns: list[str] = field(default_factory=list)
    format: str = "xlsx"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportSelection:
        """Checked and normalised; every problem names its field in ``details``."""
        if not isinstance(data, dict):
            raise InvalidInput(_("The selection is an object"))
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                _("Unknown selection fields: %(names)s") % {"names": ", ".join(unknown)},
                details={"unknown": unknown},
            )
        selection = cls(
            segment_id=_optional_id(data.get("segment_id"), "segment_id"),
            rules=_rules(data.get("rules")),
            customer_ids=_ids(data.get("customer_ids"), "customer_ids", MAX_IDS),
            stage=_choices(data.get("stage"), "stage", LifecycleStage.values),
            owner_id=_optional_id(data.get("owner_id"), "owner_id"),
            tag_ids=_ids(data.get("tag_ids"), "tag_ids", 100) or [],
            channel=_text(data.get("channel"), "channel", 30),
            status=(_choices(data.get("status"), "status", Customer.Status.values) or [""])[0],
            q=_text(data.get("q"), "q", SEARCH_MAX),
            columns=[str(c) for c in data.get("columns") or []],
            format=str(data.get("format") or "xlsx").lower(),
        )
        sources = [
            name
            for name in ("segment_id", "rules", "customer_ids")
            if getattr(selection, name) is not None
        ]
        if len(sources) > 1:
            raise InvalidInput(
                _("Choose one of segment_id, rules and customer_ids"),
                details={"sources": sources},
            )
        if selection.format not in FORMATS:
            raise InvalidInput(_("The format is csv or xlsx"), details={"format": selection.format})
        return selection

    def as_params(self) -> dict[str, Any]:
        return asdict(self)


def _optional_id(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise InvalidInput(_("%(field)s is an id") % {"field": name}, details={name: value})
    return number


def _ids(value: Any, name: str, limit: int) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(_("%(field)s is a list of ids") % {"field": name}, details={name: value})
    if len(value) > limit:
        raise InvalidInput(
            _("At most %(limit)d ids in %(field)s") % {"limit": limit, "field": name},
            details={name: len(value)},
        )
    return sorted({_optional_id(item, name) or 0 for item in value} - {0})


def _choices(value: Any, name: str, allowed: list[str]) -> list[str]:
    if value in (None, "", []):
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)):
        raise InvalidInput(_("%(field)s is a list") % {"field": name}, details={name: value})
    wrong = [item for item in values if item not in allowed]
    if wrong:
        raise InvalidInput(
            _("%(field)s must be among: %(choices)s")
            % {"field": name, "choices": ", ".join(allowed)},
            details={name: wrong},
        )
    return list(dict.fromkeys(values))


def _text(value: Any, name: str, limit: int) -> str:
    text = "" if value is None else str(value).strip()
    if len(text) > limit:
        raise InvalidInput(
            _("%(field)s is at most %(limit)d characters") % {"field": name, "limit": limit},
            details={name: text[:limit]},
        )
    return text


def _rules(value: Any) -> dict[str, Any] | None:
    if value in (None, {}):
        return None
    if not isinstance(value, dict):
        raise InvalidInput(_("rules is a rule group object"), details={"rules": value})
    return value


# --- which customers ---------------------------------------------------------------------------
def selected_customers(actor: Actor, selection: ExportSelection) -> QuerySet:
    """The customers of the selection that ``actor`` may see (one lazy queryset)."""
    visible = Customer.objects.for_actor(actor).filter(merged_into__isnull=True)
    if selection.segment_id is not None or selection.rules is not None:
        from siyu.segments.services import resolve_audience

        audience = resolve_audience(
            actor,
            segment=selection.segment_id,
            rules=selection.rules if selection.segment_id is None else None,
        )
        # The contract narrows to the actor's scope already; the semi-join makes sure.
        customers = visible.filter(pk__in=audience.values("pk"))
    elif selection.customer_ids is not None:
        customers = visible.filter(pk__in=selection.customer_ids)
    else:
        customers = visible
    return apply_filters(actor.tenant_id, customers, selection)


def apply_filters(tenant_id: int, customers: QuerySet, selection: ExportSelection) -> QuerySet:
    """The customer list's filters: stage, owner, tags (any of), channel, status, search."""
    if selection.stage:
        customers = customers.filter(lifecycle_stage__in=selection.stage)
    if selection.owner_id:
        customers = customers.filter(owner_id=selection.owner_id)
    if selection.tag_ids:
        tagged = CustomerTag.objects.for_tenant(tenant_id).filter(tag_id__in=selection.tag_ids)
        customers = customers.filter(pk__in=tagged.values("customer_id"))
    if selection.channel:  # a channel family: the state's prefix, as the list filters it
        customers = customers.filter(source_state__startswith=selection.channel)
    if selection.status:
        customers = customers.filter(status=selection.status)
    if selection.q:
        customers = customers.filter(search_condition(tenant_id, selection.q))
    return customers


def search_condition(tenant_id: int, term: str) -> Q:
    """The customer list's search: a phone number (by its fingerprint, whole numbers only),
    else the name (WeCom's or the brand's), a friendship's remark, or an exact
    external_userid or unionid."""
    if profiles.looks_like_phone(term):
        return Q(phone_hash=profiles.phone_hash_of(term))
    remarks = Follow.objects.for_tenant(tenant_id).filter(
        customer_id=OuterRef("pk"), remark__icontains=term
    )
    return (
        Q(name__icontains=term)
        | Q(**{f"custom__{profiles.DISPLAY_NAME_KEY}__icontains": term})
        | Q(external_userid=term)
        | Q(unionid=term)
        | Exists(remarks)
    )


# --- starting an export --------------------------------------------------------------------------
def require_export_rights(actor: Actor) -> None:
    if not actor.has_perm(EXPORT_PERMISSION):
        raise Forbidden(
            _("Your role does not allow exporting data (needs '%(permission)s')")
            % {"permission": EXPORT_PERMISSION},
            details={"required_permission": EXPORT_PERMISSION},
        )


def start_export(
    actor: Actor, selection: ExportSelection | dict[str, Any], *, enqueue: bool = True
) -> BackgroundJob:
    """Queue an export of the selection, as ``actor`` (checked now and when it runs)."""
    require_export_rights(actor)
    if isinstance(selection, dict):
        selection = ExportSelection.from_dict(selection)
    selection.columns = list(export_columns(actor, selection.columns))
    if selection.segment_id is not None:
        _check_segment(actor, selection.segment_id)
    if selection.rules is not None:
        from siyu.segments.services import validate_rules

        selection.rules = validate_rules(actor.tenant, selection.rules)
    label = _("Export customers (%(format)s)") % {"format": selection.format.upper()}
    with transaction.atomic():
        job = start_job(
            actor,
            KIND,
            label,
            params={
                "selection": selection.as_params(),
                "_language": translation.get_language() or "",
            },
            enqueue=enqueue,
        )
        record_audit(
            actor,
            "customers.export_started",
            job,
            changes={"selection": [None, _audit_summary(selection)]},
        )
    return job


def _check_segment(actor: Actor, segment_id: int) -> None:
    from siyu.segments.services import segment_or_404

    segment_or_404(actor, segment_id)


def _audit_summary(selection: ExportSelection) -> dict[str, Any]:
    summary = selection.as_params()
    if summary.get("customer_ids") is not None:
        summary["customer_ids"] = len(summary["customer_ids"])
    return summary


# --- columns ------------------------------------------------------------------------------------
def available_columns(actor: Actor) -> list[tuple[str, str]]:
    """(key, label) of every column an export can hold: built-in ones, then custom fields."""
    fields = profiles.custom_fields(actor.tenant)
    return [(key, str(COLUMNS_BY_KEY[key].label)) for key in DEFAULT_EXPORT_COLUMNS] + [
        (f"{CUSTOM_PREFIX}{f.key}", custom_header(f, fields)) for f in fields
    ]


def export_columns(actor: Actor, wanted: list[str]) -> list[str]:
    """The chosen columns, checked; none chosen means every column incl. custom fields."""
    available = [key for key, _label in available_columns(actor)]
    if not wanted:
        return available
    unknown = [key for key in wanted if key not in available]
    if unknown:
        raise InvalidInput(
            _("Unknown columns: %(names)s") % {"names": ", ".join(unknown)},
            details={"columns": unknown, "available": available},
        )
    return list(dict.fromkeys(wanted))


# --- the job ------------------------------------------------------------------------------------
@job_runner(KIND)
def run_export(job: BackgroundJob, progress: Progress) -> dict[str, Any]:
    actor = job_actor(job)
    require_export_rights(actor)
    selection = ExportSelection(**job.params["selection"])
    language = job.params.get("_language") or translation.get_language()
    with translation.override(language):
        return write_export(actor, selection, progress)


def write_export(actor: Actor, selection: ExportSelection, progress: Progress) -> dict[str, Any]:
    """Write the file chunk by chunk to a temporary file, then store it as the output."""
    customers = selected_customers(actor, selection)
    total = customers.count()
    progress.set_total(total)
    columns = export_columns(actor, selection.columns)
    renderer = RowRenderer.load(actor, columns)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    filename = f"customers-{stamp}.{selection.format}"
    writer = XlsxWriter if selection.format == "xlsx" else CsvWriter
    rows = 0
    with tempfile.TemporaryFile() as buffer:
        with writer(buffer) as sheet:
            sheet.header(renderer.headers())
            for chunk in customer_chunks(customers):
                tags = renderer.tags_of(chunk)
                for customer in chunk:
                    sheet.row(renderer.row(customer, tags.get(customer.pk, [])))
                rows += len(chunk)
                progress.advance(len(chunk))
        buffer.seek(0)
        progress.save_output(filename, buffer)
    return {"rows": rows, "format": selection.format, "columns": len(columns)}


def customer_chunks(customers: QuerySet, size: int = CHUNK) -> Iterator[list[Customer]]:
    """The customers in id order, ``size`` at a time (keyset paging: each chunk is one
    indexed query, however far into the list)."""
    last = 0
    while True:
        chunk = list(customers.filter(pk__gt=last).select_related("owner").order_by("pk")[:size])
        if not chunk:
            return
        yield chunk
        last = chunk[-1].pk


@dataclass
class RowRenderer:
    """Turns a customer into the values of the chosen columns, as the starter may see them."""

    actor: Actor
    columns: list[str]
    fields: dict[str, CustomField]
    ambiguous_tag_names: set[str]
    show_phone: bool

    @classmethod
    def load(cls, actor: Actor, columns: list[str]) -> RowRenderer:
        names: dict[str, int] = {}
        for name in (
            Tag.objects.for_tenant(actor.tenant)
            .filter(deleted=False)
            .values_list("name", flat=True)
        ):
            names[name] = names.get(name, 0) + 1
        return cls(
            actor=actor,
            columns=columns,
            fields={f.key: f for f in profiles.custom_fields(actor.tenant, active_only=False)},
            ambiguous_tag_names={name for name, count in names.items() if count > 1},
            show_phone=profiles.may_see_phone(actor),
        )

    def headers(self) -> list[str]:
        active = [f for f in self.fields.values() if f.is_active]
        labels = []
        for key in self.columns:
            if key.startswith(CUSTOM_PREFIX):
                labels.append(custom_header(self.fields[key[len(CUSTOM_PREFIX) :]], active))
            else:
                labels.append(str(COLUMNS_BY_KEY[key].label))
        return labels

    def tags_of(self, chunk: list[Customer]) -> dict[int, list[str]]:
        if "tags" not in self.columns:
            return {}
        links = (
            CustomerTag.objects.for_tenant(self.actor.tenant)
            .filter(customer_id__in=[c.pk for c in chunk], tag__deleted=False)
            .select_related("tag__group")
            .order_by("customer_id", "tag__group__order", "tag__order", "tag_id")
        )
        tags: dict[int, list[str]] = {}
        for link in links:
            tags.setdefault(link.customer_id, []).append(
                tag_label(link.tag, self.ambiguous_tag_names)
            )
        return tags

    def row(self, customer: Customer, tags: list[str]) -> list[Any]:
        return [self.value(customer, key, tags) for key in self.columns]

    def value(self, customer: Customer, key: str, tags: list[str]) -> Any:
        if key.startswith(CUSTOM_PREFIX):
            value = (customer.custom or {}).get(key[len(CUSTOM_PREFIX) :])
            if isinstance(value, list):
                return "; ".join(str(item) for item in value)
            field = self.fields.get(key[len(CUSTOM_PREFIX) :])
            if field is not None and field.type == CustomField.Type.DATE and value:
                try:
                    return date.fromisoformat(value)
                except (TypeError, ValueError):
                    return value
            return value
        simple = {
            "id": lambda: customer.pk,
            "name": lambda: profiles.display_name(customer),
            "phone": lambda: (
                customer.phone if self.show_phone else profiles.mask_phone(customer.phone)
            ),
            "gender": customer.get_gender_display,
            "interests": lambda: "; ".join(customer.interests or []),
            "tags": lambda: "; ".join(tags),
            "owner": lambda: _owner(customer),
            "lifecycle_stage": customer.get_lifecycle_stage_display,
            "status": customer.get_status_display,
            "first_added_at": lambda: _local(customer.first_added_at),
            "last_interaction_at": lambda: _local(customer.last_interaction_at),
        }
        if key in simple:
            return simple[key]()
        return getattr(customer, key)


def _owner(customer: Customer) -> str:
    if customer.owner is None:
        return ""
    return f"{customer.owner.name} ({customer.owner.wecom_userid})"


def _local(moment: datetime | None) -> datetime | None:
    """A naive local time: what a spreadsheet shows (and openpyxl can write)."""
    return timezone.localtime(moment).replace(tzinfo=None, microsecond=0) if moment else None


# --- the two file formats ------------------------------------------------------------------------
class CsvWriter:
    """CSV as Excel in China opens it: UTF-8 with a BOM, text that looks like a formula
    made plain."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer
        self.text = io.TextIOWrapper(buffer, encoding="utf-8-sig", newline="")
        self.writer = csv.writer(self.text)

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.text.flush()
        self.text.detach()  # leave the binary buffer open for storing

    def header(self, labels: list[str]) -> None:
        self.writer.writerow([guard_formula(label) for label in labels])

    def row(self, values: list[Any]) -> None:
        self.writer.writerow([self._cell(value) for value in values])

    @staticmethod
    def _cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return guard_formula(str(value))


class XlsxWriter:
    """A streamed workbook (openpyxl write-only): rows go to disk as they come; text cells
    are always text (never formulas), dates are dates."""

    def __init__(self, buffer: Any) -> None:
        from openpyxl import Workbook

        self.buffer = buffer
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet(title=_("Customers")[:31])

    def __enter__(self) -> XlsxWriter:
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        if exc_type is None:
            self.workbook.save(self.buffer)
        else:
            self.workbook.close()

    def header(self, labels: list[str]) -> None:
        self.sheet.append([self._cell(label) for label in labels])

    def row(self, values: list[Any]) -> None:
        self.sheet.append([self._cell(value) for value in values])

    def _cell(self, value: Any) -> Any:
        from openpyxl.cell import WriteOnlyCell

        if value is None:
            return None
        if isinstance(value, datetime):
            cell = WriteOnlyCell(self.sheet, value=value)
            cell.number_format = "yyyy-mm-dd hh:mm:ss"
            return cell
        if isinstance(value, date):
            cell = WriteOnlyCell(self.sheet, value=value)
            cell.number_format = "yyyy-mm-dd"
            return cell
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        cell = WriteOnlyCell(self.sheet, value=ILLEGAL_CHARACTERS_RE.sub("", str(value)))
        cell.data_type = "s"  # "=..." stays text: openpyxl would make it a formula
        return cell
