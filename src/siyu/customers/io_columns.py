"""The columns of customer imports and exports, shared so that an export imports back.

An export writes each column's label in the starter's language; an import recognises a
column by its key (``external_userid``), its label in English or Chinese, or one of the
usual names Chinese spreadsheets give it (``手机号``, ``外部联系人ID`` …). Custom fields are
columns too: by key, by label, or as ``custom.<key>``.

Some exported columns describe WeCom's or Siyu's own state (owner, stage, channel, dates):
an import accepts them in the file, so that an export can be edited and imported back, and
leaves them alone.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from django.utils import translation
from django.utils.translation import gettext_lazy as _

from siyu.customers.models import CustomField, Tag

CUSTOM_PREFIX = "custom."
# Characters Excel would run as a formula at the start of a cell (CSV injection): exports
# prefix such text with an apostrophe, imports take it off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TAG_SEPARATORS = re.compile(r"[;；\n]")
TAG_GROUP_SEPARATOR = "/"


@dataclass(frozen=True)
class Column:
    key: str
    label: Any  # a lazy translation: the header an export writes
    aliases: tuple[str, ...] = ()
    importable: bool = True


COLUMNS: tuple[Column, ...] = (
    Column("id", _("Siyu ID"), ("siyu_id", "客户编号", "编号"), importable=False),
    Column(
        "external_userid",
        _("External userid"),
        ("外部联系人ID", "外部联系人", "客户ID", "external user id", "external_user_id"),
    ),
    Column("unionid", _("Unionid"), ("union_id", "微信unionid")),
    Column("name", _("Name"), ("姓名", "客户姓名", "客户名称", "名称", "display_name", "显示名")),
    Column("phone", _("Phone"), ("mobile", "手机号", "手机", "手机号码", "电话", "联系电话")),
    Column("gender", _("Gender"), ("sex", "性别")),
    Column("birthday", _("Birthday"), ("生日", "出生日期")),
    Column("age_band", _("Age band"), ("年龄段", "年龄")),
    Column("province", _("Province"), ("省份", "省")),
    Column("city", _("City"), ("城市", "市")),
    Column("interests", _("Interests"), ("兴趣", "兴趣爱好", "爱好")),
    Column("tags", _("Tags"), ("tag", "标签", "客户标签")),
    Column("owner", _("Owner"), ("负责人", "所属员工", "跟进人", "owner_userid"), importable=False),
    Column(
        "lifecycle_stage",
        _("Lifecycle stage"),
        ("生命周期", "生命周期阶段", "阶段", "stage"),
        importable=False,
    ),
    Column("status", _("Status"), ("状态",), importable=False),
    Column("source_state", _("Channel"), ("来源渠道", "渠道", "channel"), importable=False),
    Column("first_added_at", _("First added at"), ("添加时间", "首次添加时间"), importable=False),
    Column(
        "last_interaction_at",
        _("Last interaction"),
        ("最近互动", "最后互动时间", "最近互动时间"),
        importable=False,
    ),
    Column("corp_name", _("Company"), ("企业", "公司"), importable=False),
    Column("position", _("Position"), ("职位",), importable=False),
)
COLUMNS_BY_KEY = {column.key: column for column in COLUMNS}
# What an export writes when the caller does not choose.
DEFAULT_EXPORT_COLUMNS = tuple(column.key for column in COLUMNS)
# Columns a file must have at least one of, to find each row's customer.
MATCH_KEYS = ("external_userid", "unionid", "phone")


def normalise_header(text: Any) -> str:
    """A header as compared: full-width folded, lower-case, without spaces, ``_``, ``-``,
    a required-marker ``*`` or a bracketed hint ("手机号（必填）" → "手机号")."""
    value = unicodedata.normalize("NFKC", str(text if text is not None else ""))
    value = re.sub(r"[(（\[【].*?[)）\]】]\s*$", "", value.strip())
    return re.sub(r"[\s_\-*]", "", value).lower()


def _labels(column: Column) -> set[str]:
    names = {column.key, *column.aliases}
    for language in ("en", "zh-hans"):
        with translation.override(language):
            names.add(str(column.label))
    return {normalise_header(name) for name in names}


def builtin_headers() -> dict[str, str]:
    """Normalised header → built-in column key (every accepted spelling)."""
    headers: dict[str, str] = {}
    for column in COLUMNS:
        for name in _labels(column):
            headers.setdefault(name, column.key)
    return headers


def custom_headers(fields: list[CustomField]) -> dict[str, str]:
    """Normalised header → ``custom.<key>`` for the tenant's custom fields (key, label,
    ``custom.<key>``); a label that is also a built-in column's name is not taken."""
    builtin = builtin_headers()
    headers: dict[str, str] = {}
    for field in fields:
        target = f"{CUSTOM_PREFIX}{field.key}"
        for name in (target, field.key):
            headers.setdefault(normalise_header(name), target)
    for field in fields:
        label = normalise_header(field.label)
        if label not in builtin:
            headers.setdefault(label, f"{CUSTOM_PREFIX}{field.key}")
    return headers


def custom_header(field: CustomField, fields: list[CustomField]) -> str:
    """The header an export writes for a custom field: its label, unless that label would
    import as something else (a built-in column, or another field's label)."""
    label = normalise_header(field.label)
    clash = label in builtin_headers() or any(
        other.pk != field.pk and normalise_header(other.label) == label for other in fields
    )
    return f"{CUSTOM_PREFIX}{field.key}" if clash else field.label


def guard_formula(value: str) -> str:
    """Text Excel would run as a formula gets a leading apostrophe (shown as plain text)."""
    if value and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def unguard_formula(value: str) -> str:
    """Undo ``guard_formula`` on a cell read back from a file."""
    if len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def tag_label(tag: Tag, ambiguous_names: set[str]) -> str:
    """A tag as written in a file: its name, or ``group/name`` where the name alone is
    ambiguous within the tenant."""
    if tag.name in ambiguous_names:
        return f"{tag.group.name}{TAG_GROUP_SEPARATOR}{tag.name}"
    return tag.name
