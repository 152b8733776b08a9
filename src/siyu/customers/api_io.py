"""API of customer imports and exports: both start a background job and answer 202 with it;
follow it with ``GET /jobs/{id}`` and fetch its file with ``GET /jobs/{id}/download``.

Imports need the scope ``customers:import`` (and the staff's ``customers.import_customer``),
exports ``customers:export`` (``core.export_data``). An export holds the customers the caller
may see, whatever it selects.
"""

from typing import Any, Literal

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, File, Form, Router, Schema, UploadedFile
from ninja.responses import Status

from siyu.core.api_errors import error_responses
from siyu.core.api_jobs import JobOut
from siyu.core.api_support import Id, require
from siyu.core.errors import InvalidInput
from siyu.customers import exports, imports
from siyu.customers.models import LifecycleStage

router = Router(tags=["imports and exports"])

START_ERRORS = error_responses(400, 401, 403, 404, 422)


@router.post(
    "/customers/imports",
    response={202: JobOut, **START_ERRORS},
    summary="Import customers from a CSV or Excel file",
)
def import_customers(
    request: HttpRequest,
    file: File[UploadedFile],
    dry_run: Form[bool] = False,
    create_missing: Form[bool] = False,
) -> Status:
    """Upload a CSV (UTF-8, GBK) or .xlsx file as multipart ``file``. Columns by header:
    external_userid / 外部联系人ID, unionid, name / 姓名, phone / 手机号, gender / 性别,
    birthday / 生日, province / 省份, city / 城市, age_band / 年龄段, interests / 兴趣, tags /
    标签 (names, ``;``-separated) and custom fields by key or label.

    Every row is checked first; if any is wrong nothing is imported, the job fails and its
    ``result.errors`` (and its download, as CSV) list every problem: row, column, reason,
    value. ``dry_run`` only checks; ``create_missing`` creates customers whose
    external_userid Siyu does not know yet (whole-tenant scope only)."""
    actor = require(request, "customers:import")
    if file.size is not None and file.size > imports.MAX_FILE_BYTES:
        raise InvalidInput(
            _("The file is larger than %(limit)d MB: split it into several imports")
            % {"limit": imports.MAX_FILE_BYTES // (1024 * 1024)},
            code="file_too_large",
            details={"file": file.name, "bytes": file.size},
        )
    job = imports.start_import(
        actor,
        filename=file.name or "customers.csv",
        content=file.read(),
        dry_run=dry_run,
        create_missing=create_missing,
    )
    return Status(202, job)


class ExportIn(Schema):
    """Which customers (one source, then the list's filters), which columns, which format."""

    segment_id: Id | None = Field(None, description="A segment's members (static) or matches")
    rules: dict[str, Any] | None = Field(
        None, description="Ad-hoc segment rules (the rule language of /segments)"
    )
    customer_ids: list[Id] | None = Field(
        None, max_length=exports.MAX_IDS, description="Exactly these customers"
    )
    stage: list[LifecycleStage] = Field(default_factory=list, description="Lifecycle stages")
    owner_id: Id | None = Field(None, description="Customers owned by this staff")
    tag_ids: list[Id] = Field(default_factory=list, max_length=100, description="Any of")
    channel: str = Field("", max_length=30, description="Source channel (state prefix)")
    status: Literal["", "active", "lost"] = ""
    q: str = Field("", max_length=exports.SEARCH_MAX, description="The list's search")
    columns: list[str] = Field(
        default_factory=list,
        description="Column keys (see GET /customers/exports/columns); empty: all",
    )
    format: Literal["csv", "xlsx"] = "xlsx"


class ColumnOut(Schema):
    key: str = Field(examples=["custom.level"])
    label: str = Field(examples=["会员级别"])


@router.post(
    "/customers/exports",
    response={202: JobOut, **START_ERRORS},
    summary="Export customers as CSV or Excel",
)
def export_customers(request: HttpRequest, body: ExportIn) -> Status:
    """The customers of the selection that the caller may see, as a file (CSV is UTF-8 with
    BOM for Excel). Phone numbers are masked unless the caller may see them."""
    actor = require(request, "customers:export")
    selection = body.model_dump(exclude_unset=True)
    if "stage" in selection:
        selection["stage"] = [str(stage) for stage in selection["stage"]]
    job = exports.start_export(actor, selection)
    return Status(202, job)


@router.get(
    "/customers/exports/columns",
    response={200: list[ColumnOut], **error_responses(401, 403)},
    summary="The columns an export can hold",
)
def export_columns(request: HttpRequest) -> list[dict[str, str]]:
    actor = require(request, "customers:export")
    return [{"key": key, "label": label} for key, label in exports.available_columns(actor)]
