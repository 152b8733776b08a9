"""The fields of the rule language, in a registry other domains extend.

Why a registry: a segment rule names fields (``city``, ``tags``, ``event``, ``custom.skin``,
``rfm.layer`` ...), and later domains bring their own (commerce: spend and orders; loyalty:
points and tier). Each field is a ``FieldSpec``: its *kind* (which fixes the operators and the
shape of the value), how its values are checked, and a ``build`` function that turns one
condition into a Django ``Q`` over ``Customer`` — a column comparison or a semi-join
subquery, never a Python loop, so that a whole rule stays ONE SQL statement. A domain adds a
field at import time (e.g. in its ``apps.py`` ``ready()``)::

    from siyu.segments.fields import NUMBER, FieldSpec, register_field, related_builder

    register_field(FieldSpec(
        name="points", label=_("points balance"), kind=NUMBER, category="loyalty",
        build=related_builder(PointsBalance, "customer_id", "balance"),
    ))

Fields whose names depend on the tenant (``custom.<key>``) come from a *source*
(``register_field_source``) that resolves the name per tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from django.db.models import (
    BigIntegerField,
    BooleanField,
    Count,
    F,
    FloatField,
    Func,
    Model,
    OuterRef,
    Q,
    Subquery,
    TextField,
)
from django.db.models import lookups as L
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

# --- kinds: what a field's values are; they fix the operators -------------------------------
TEXT = "text"
CHOICE = "choice"
NUMBER = "number"
DATETIME = "datetime"  # a moment (timestamps): day boundaries in the tenant's time zone
DATE = "date"  # a calendar date
BIRTHDAY = "birthday"  # a date whose day of the year matters
MULTI_CHOICE = "multi_choice"  # a list of strings (interests, multi-choice custom fields)
IDS = "ids"  # a set of related rows the customer has (tags, groups, friends)
STAFF = "staff"  # one staff (the owner)
EVENT = "event"  # behaviour: events over core.Event

KIND_OPERATORS: dict[str, tuple[str, ...]] = {
    TEXT: (
        "eq",
        "ne",
        "in",
        "not_in",
        "contains",
        "not_contains",
        "starts_with",
        "is_empty",
        "is_not_empty",
    ),
    CHOICE: ("eq", "ne", "in", "not_in", "is_empty", "is_not_empty"),
    NUMBER: (
        "eq",
        "ne",
        "lt",
        "gt",
        "lte",
        "gte",
        "between",
        "in",
        "not_in",
        "is_empty",
        "is_not_empty",
    ),
    DATETIME: (
        "eq",
        "before",
        "after",
        "between",
        "in_last_days",
        "not_in_last_days",
        "is_empty",
        "is_not_empty",
    ),
    DATE: (
        "eq",
        "before",
        "after",
        "between",
        "in_last_days",
        "not_in_last_days",
        "is_empty",
        "is_not_empty",
    ),
    BIRTHDAY: (
        "this_month",
        "next_days",
        "eq",
        "before",
        "after",
        "between",
        "is_empty",
        "is_not_empty",
    ),
    MULTI_CHOICE: ("has_any", "has_all", "has_none", "is_empty", "is_not_empty"),
    IDS: ("has_any", "has_all", "has_none", "is_empty", "is_not_empty"),
    STAFF: ("in", "not_in", "is_empty", "is_not_empty"),
    EVENT: ("at_least", "at_most", "not_since"),
}

OPERATOR_LABELS: dict[str, Any] = {
    "eq": pgettext_lazy("rule operator", "is"),
    "ne": pgettext_lazy("rule operator", "is not"),
    "lt": _("less than"),
    "gt": _("greater than"),
    "lte": _("at most"),
    "gte": _("at least"),
    "between": _("between"),
    "in": _("is any of"),
    "not_in": _("is none of"),
    "contains": _("contains"),
    "not_contains": _("does not contain"),
    "starts_with": _("starts with"),
    "is_empty": _("is empty"),
    "is_not_empty": _("is not empty"),
    "in_last_days": _("in the last N days"),
    "not_in_last_days": _("not in the last N days"),
    "before": _("before"),
    "after": _("after"),
    "this_month": _("this month"),
    "next_days": _("in the next N days"),
    "has_any": _("has any of"),
    "has_all": _("has all of"),
    "has_none": _("has none of"),
    "at_least": _("did it at least N times"),
    "at_most": _("did it at most N times"),
    "not_since": _("has not done it since"),
}
OPERATORS = frozenset(OPERATOR_LABELS)

# The shape of the value an operator takes on a kind (the console picks its inputs by it).
NO_VALUE = "none"


def value_shape(kind: str, operator: str) -> str:
    """``text`` / ``texts`` / ``choice`` / ``choices`` / ``number`` / ``number_range`` /
    ``numbers`` / ``date`` / ``date_range`` / ``days`` / ``ids`` / ``event`` / ``none``."""
    if operator in ("is_empty", "is_not_empty", "this_month"):
        return NO_VALUE
    if kind == EVENT:
        return "event"
    if kind in (IDS, STAFF):
        return "ids"
    if kind == MULTI_CHOICE:
        return "choices"
    if operator in ("in_last_days", "not_in_last_days", "next_days"):
        return "days"
    if kind in (DATETIME, DATE, BIRTHDAY):
        return "date_range" if operator == "between" else "date"
    if kind == NUMBER:
        if operator == "between":
            return "number_range"
        return "numbers" if operator in ("in", "not_in") else "number"
    if kind == CHOICE:
        return "choices" if operator in ("in", "not_in") else "choice"
    return "texts" if operator in ("in", "not_in") else "text"


# How expensive a condition is to test (see FieldSpec.cost).
COLUMN, EXPRESSION, SUBQUERY, AGGREGATE = 0, 1, 2, 3


# --- compile context -------------------------------------------------------------------------
@dataclass
class CompileContext:
    """What compiling one rule for one tenant needs, loaded once per rule."""

    tenant_id: int
    now: datetime = field(default_factory=lambda: timezone.now())  # looked up when called

    @cached_property
    def today(self) -> date:
        return timezone.localtime(self.now).date()

    @cached_property
    def custom_fields(self) -> dict[str, Any]:
        from siyu.customers.models import CustomField

        return {row.key: row for row in CustomField.objects.for_tenant(self.tenant_id)}

    @cached_property
    def has_merges(self) -> bool:
        """Whether any customer was merged into another: events then count for the survivor.

        Asked of ``CustomerMerge`` (one row per merge, written by the merge service with
        ``merged_into``), not of ``Customer.merged_into``: SQLite's planner sees that column
        all NULL and scans the customers rather than use its index.
        """
        from siyu.customers.models import CustomerMerge

        return CustomerMerge.objects.for_tenant(self.tenant_id).exists()

    def day_start(self, day: date) -> datetime:
        """Midnight at the start of ``day`` in the tenant's (the site's) time zone."""
        return timezone.make_aware(datetime.combine(day, time.min))


# --- field specs and the registry -------------------------------------------------------------
Builder = Callable[[CompileContext, str, Any], Q]
KnownIds = Callable[[CompileContext, list[int]], set[int]]
Choices = Callable[[CompileContext], Sequence[tuple[Any, Any]]]


@dataclass(frozen=True)
class FieldSpec:
    """One field of the rule language.

    ``build(ctx, operator, value)`` gets an already validated and normalised value and
    returns a ``Q`` over ``Customer``. ``choices`` lists the allowed values of choice and
    multi-choice fields; ``known_ids`` says which of the given ids exist in the tenant (ids
    fields); ``bounds`` limits numbers; ``picker`` names the console's value picker.

    ``cost`` orders the conditions of a group in the SQL: a comparison of the customer's own
    columns (``COLUMN``) before one of a JSON key (``EXPRESSION``) before a subquery
    (``SUBQUERY``, the default) before a grouped event count (``AGGREGATE``). AND and OR do
    not care about the order, but SQLite tests the terms of a row in the order written, and
    a cheap test that fails spares the expensive ones — what a person writing the SQL by hand
    does.
    """

    name: str
    label: Any
    kind: str
    build: Builder
    category: str = "profile"
    operators: tuple[str, ...] | None = None
    choices: Choices | None = None
    known_ids: KnownIds | None = None
    picker: str = ""
    bounds: tuple[float | None, float | None] = (None, None)
    integer: bool = False
    help_text: Any = ""
    cost: int = 2

    @property
    def allowed_operators(self) -> tuple[str, ...]:
        return self.operators or KIND_OPERATORS[self.kind]


@dataclass(frozen=True)
class FieldSource:
    """Fields named ``<prefix><something>`` that exist per tenant (e.g. ``custom.<key>``)."""

    prefix: str
    resolve: Callable[[CompileContext, str], FieldSpec | None]
    list_all: Callable[[CompileContext], list[FieldSpec]]


_fields: dict[str, FieldSpec] = {}
_sources: dict[str, FieldSource] = {}

CATEGORIES: dict[str, Any] = {
    "profile": _("Profile"),
    "relationship": _("Relationship"),
    "behaviour": _("Behaviour"),
    "custom": _("Custom fields"),
    "rfm": _("RFM"),
}


def register_field(spec: FieldSpec) -> None:
    """Add (or replace, on re-import) a field of the rule language."""
    if spec.kind not in KIND_OPERATORS:
        raise ValueError(f"Unknown field kind {spec.kind!r}")
    unknown = set(spec.allowed_operators) - set(KIND_OPERATORS[spec.kind])
    if unknown:
        raise ValueError(f"Operators {sorted(unknown)} do not apply to {spec.kind} fields")
    _fields[spec.name] = spec


def register_field_source(source: FieldSource) -> None:
    _sources[source.prefix] = source


def register_category(key: str, label: Any) -> None:
    CATEGORIES.setdefault(key, label)


def get_field(ctx: CompileContext, name: str) -> FieldSpec | None:
    if name in _fields:
        return _fields[name]
    for prefix, source in _sources.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return source.resolve(ctx, name)
    return None


def available_fields(ctx: CompileContext) -> list[FieldSpec]:
    """Every field a rule of this tenant may use, in the console's order."""
    specs = list(_fields.values())
    for source in _sources.values():
        specs.extend(source.list_all(ctx))
    order = list(CATEGORIES)
    return sorted(
        specs,
        key=lambda s: order.index(s.category) if s.category in order else len(order),
    )


# --- targets: a column, or an expression over JSON ----------------------------------------------
class Target:
    """Something of the customer row a condition compares: ``q(lookup, value)`` builds one
    comparison; ``negate`` builds its opposite, counting missing values (NULL) as "not"."""

    nullable = True
    blank_text = False  # "" counts as empty too (text)

    def q(self, lookup: str, value: Any) -> Q:
        raise NotImplementedError

    def negate(self, q: Q) -> Q:
        raise NotImplementedError

    def empty(self) -> Q:
        parts = [self.q("isnull", True)] if self.nullable else []
        if self.blank_text:
            parts.append(self.q("exact", ""))
        if not parts:  # a NOT NULL column without a blank value is never empty
            return Q(pk__in=[])
        q = parts[0]
        for part in parts[1:]:
            q |= part
        return q


class Column(Target):
    """A column of ``Customer`` (or of the model a subquery reads): Django's own lookups,
    whose negation already counts NULL as "not equal"."""

    def __init__(self, name: str, *, nullable: bool = False, blank_text: bool = False) -> None:
        self.name = name
        self.nullable = nullable
        self.blank_text = blank_text

    def q(self, lookup: str, value: Any) -> Q:
        return Q(**{f"{self.name}__{lookup}": value})

    def negate(self, q: Q) -> Q:
        return ~q


_LOOKUPS = {
    "exact": L.Exact,
    "in": L.In,
    "lt": L.LessThan,
    "lte": L.LessThanOrEqual,
    "gt": L.GreaterThan,
    "gte": L.GreaterThanOrEqual,
    "icontains": L.IContains,
    "startswith": L.StartsWith,
    "isnull": L.IsNull,
}


class Expression(Target):
    """An SQL expression (e.g. a key of a JSON column): lookups as expressions; a missing
    value is NULL, and the opposite of a comparison includes it explicitly."""

    def __init__(self, expression: Any, *, blank_text: bool = False) -> None:
        self.expression = expression
        self.blank_text = blank_text

    def q(self, lookup: str, value: Any) -> Q:
        return Q(_LOOKUPS[lookup](self.expression, value))

    def negate(self, q: Q) -> Q:
        return ~q | self.q("isnull", True)


# --- JSON expressions (one SQL text per database) -----------------------------------------------
def _json_path(key: str | None) -> str:
    return "$" if key is None else '$."' + key.replace('"', "") + '"'


class JsonNumber(Func):
    """The number stored under ``key`` of a JSON column; NULL unless it is a JSON number
    (so a stray text value never breaks a cast on PostgreSQL)."""

    output_field = FloatField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column))
        self.key = key

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        column, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            sql = (
                f"(CASE WHEN jsonb_typeof({column} -> %s) = 'number' "
                f"THEN ({column} ->> %s)::double precision END)"
            )
            return sql, [*params, self.key, *params, self.key]
        path = _json_path(self.key)
        sql = (
            f"(CASE WHEN json_type({column}, %s) IN ('integer', 'real') "
            f"THEN json_extract({column}, %s) END)"
        )
        return sql, [*params, path, *params, path]


class JsonText(Func):
    """The string stored under ``key`` of a JSON column; NULL unless it is a JSON string."""

    output_field = TextField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column))
        self.key = key

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        column, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            sql = f"(CASE WHEN jsonb_typeof({column} -> %s) = 'string' THEN {column} ->> %s END)"
            return sql, [*params, self.key, *params, self.key]
        path = _json_path(self.key)
        sql = f"(CASE WHEN json_type({column}, %s) = 'text' THEN json_extract({column}, %s) END)"
        return sql, [*params, path, *params, path]


class JsonArrayHas(Func):
    """Whether the JSON array under ``key`` (the whole column when None) holds any / all of
    the strings ``values``. A missing key holds nothing (false, never NULL)."""

    output_field = BooleanField()

    def __init__(self, column: str, key: str | None, values: list[str], *, all: bool) -> None:
        super().__init__(F(column))
        self.key = key
        self.values = list(values)
        self.all = all

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        column, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            target, target_params = column, list(params)
            if self.key is not None:
                target, target_params = f"({column} -> %s)", [*params, self.key]
            operator = "?&" if self.all else "?|"
            return f"COALESCE({target} {operator} %s::text[], false)", [
                *target_params,
                self.values,
            ]
        marks = ", ".join(["%s"] * len(self.values))
        path = _json_path(self.key)
        if self.all:
            sql = (
                f"((SELECT COUNT(DISTINCT j.value) FROM json_each({column}, %s) AS j "
                f"WHERE j.type = 'text' AND j.value IN ({marks})) = %s)"
            )
            return sql, [*params, path, *self.values, len(set(self.values))]
        sql = (
            f"EXISTS (SELECT 1 FROM json_each({column}, %s) AS j "
            f"WHERE j.type = 'text' AND j.value IN ({marks}))"
        )
        return sql, [*params, path, *self.values]


class JsonArrayIsEmpty(Func):
    """Whether the JSON value under ``key`` is missing, null, "" or an empty array."""

    output_field = BooleanField()

    def __init__(self, column: str, key: str | None) -> None:
        super().__init__(F(column))
        self.key = key

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        column, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            target, target_params = column, list(params)
            if self.key is not None:
                target, target_params = f"({column} -> %s)", [*params, self.key]
            sql = f"COALESCE({target} IN ('null'::jsonb, '[]'::jsonb, '\"\"'::jsonb), true)"
            return sql, target_params
        path = _json_path(self.key)
        sql = (
            f"COALESCE(json_type({column}, %s) = 'null' OR (json_type({column}, %s) = 'array' "
            f"AND json_array_length({column}, %s) = 0) OR (json_type({column}, %s) = 'text' "
            f"AND json_extract({column}, %s) = ''), 1)"
        )
        return sql, [*params, path, *params, path, *params, path, *params, path, *params, path]


class MonthDay(Func):
    """``MM-DD`` of a date column: birthdays compare by day of the year as plain text."""

    output_field = TextField()

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        column, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            return f"to_char({column}, 'MM-DD')", list(params)
        return f"strftime('%%m-%%d', {column})", list(params)


# --- builders: one condition → Q ---------------------------------------------------------------
def _range_start(ctx: CompileContext, kind: str, day: date) -> Any:
    return ctx.day_start(day) if kind == DATETIME else day


def _as_date(value: str) -> date:
    return date.fromisoformat(value)


def compare(target: Target, kind: str, iso_dates: bool = False) -> Builder:
    """The builder of scalar kinds (text, choice, number, dates) over one target.

    Dates of DATETIME targets become moments at midnight in the tenant's time zone; DATE
    targets compare dates; ``iso_dates`` compares ISO ``YYYY-MM-DD`` text (JSON values).
    """

    def day(ctx: CompileContext, value: date) -> Any:
        if kind == DATETIME:
            return ctx.day_start(value)
        return value.isoformat() if iso_dates else value

    def build(ctx: CompileContext, operator: str, value: Any) -> Q:
        if operator == "is_empty":
            return target.empty()
        if operator == "is_not_empty":
            return target.negate(target.empty()) if isinstance(target, Column) else ~target.empty()
        if kind in (DATETIME, DATE, BIRTHDAY):
            return _compare_dates(ctx, target, kind, operator, value, day)
        if operator == "eq":
            return target.q("exact", value)
        if operator == "ne":
            return target.negate(target.q("exact", value))
        if operator == "in":
            return target.q("in", value)
        if operator == "not_in":
            return target.negate(target.q("in", value))
        if operator == "contains":
            return target.q("icontains", value)
        if operator == "not_contains":
            return target.negate(target.q("icontains", value))
        if operator == "starts_with":
            return target.q("startswith", value)
        if operator in ("lt", "lte", "gt", "gte"):
            return target.q(operator, value)
        if operator == "between":
            return target.q("gte", value[0]) & target.q("lte", value[1])
        raise ValueError(f"operator {operator} on {kind}")  # validation stops this earlier

    return build


def _compare_dates(
    ctx: CompileContext,
    target: Target,
    kind: str,
    operator: str,
    value: Any,
    day: Callable[[CompileContext, date], Any],
) -> Q:
    if operator == "eq":
        start = _as_date(value)
        return target.q("gte", day(ctx, start)) & target.q("lt", day(ctx, start + timedelta(1)))
    if operator == "before":
        return target.q("lt", day(ctx, _as_date(value)))
    if operator == "after":
        return target.q("gte", day(ctx, _as_date(value) + timedelta(1)))
    if operator == "between":
        first, last = _as_date(value[0]), _as_date(value[1])
        return target.q("gte", day(ctx, first)) & target.q("lt", day(ctx, last + timedelta(1)))
    if operator in ("in_last_days", "not_in_last_days"):
        if kind == DATETIME:
            recent = target.q("gte", ctx.now - timedelta(days=value))
        else:  # a date within the last N days up to today
            recent = target.q("gte", day(ctx, ctx.today - timedelta(days=value))) & target.q(
                "lt", day(ctx, ctx.today + timedelta(1))
            )
        return recent if operator == "in_last_days" else target.negate(recent)
    if operator in ("this_month", "next_days"):
        return _birthday_window(ctx, target, operator, value)
    raise ValueError(f"operator {operator} on {kind}")


def _birthday_window(ctx: CompileContext, target: Target, operator: str, value: Any) -> Q:
    """Birthdays by ``MM-DD`` text: this month, or from today to today + N days (wrapping
    over New Year). A 29 February birthday counts on 28 February in common years."""
    column = target.name if isinstance(target, Column) else None
    expression = MonthDay(F(column)) if column else MonthDay(target.expression)
    month_day = Expression(expression)
    today = ctx.today
    if operator == "this_month":
        first = f"{today.month:02d}-01"
        return month_day.q("gte", first) & month_day.q("lte", f"{today.month:02d}-31")
    if value >= 365:
        return target.negate(target.empty()) if column else ~target.empty()
    end = today + timedelta(days=value)
    start_text, end_text = today.strftime("%m-%d"), end.strftime("%m-%d")
    if end_text == "02-28" and not _is_leap(end.year):
        end_text = "02-29"
    if end.year == today.year:
        return month_day.q("gte", start_text) & month_day.q("lte", end_text)
    return month_day.q("gte", start_text) | month_day.q("lte", end_text)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def column_builder(
    name: str, kind: str, *, nullable: bool = False, blank_text: bool = False
) -> Builder:
    """Compare a column of ``Customer`` (``blank_text``: "" counts as empty, text columns)."""
    return compare(Column(name, nullable=nullable, blank_text=blank_text), kind)


def related_builder(
    model: type[Model],
    customer_column: str,
    column: str,
    kind: str = NUMBER,
    *,
    blank_text: bool = False,
) -> Builder:
    """Compare a column of a per-customer table (RFM scores, later spend, points, tier):
    the customers having a row of ``model`` that matches; no row never matches."""
    inner = compare(Column(column, nullable=True, blank_text=blank_text), kind)

    def build(ctx: CompileContext, operator: str, value: Any) -> Q:
        rows = model._default_manager.for_tenant(ctx.tenant_id).filter(inner(ctx, operator, value))
        return Q(pk__in=rows.order_by().values(customer_column))

    return build


def membership_builder(
    rows: Callable[[CompileContext], Any], customer_column: str, item_column: str
) -> Builder:
    """has any / all / none of a set of ids the customer is linked to (tags, groups, staff
    friends): an ``IN (SELECT customer_id ...)`` semi-join, grouped for "all"."""

    def build(ctx: CompileContext, operator: str, value: Any) -> Q:
        links = rows(ctx).order_by()
        if operator == "is_empty":
            return ~Q(pk__in=links.values(customer_column))
        if operator == "is_not_empty":
            return Q(pk__in=links.values(customer_column))
        chosen = links.filter(**{f"{item_column}__in": value})
        if operator == "has_any":
            return Q(pk__in=chosen.values(customer_column))
        if operator == "has_none":
            return ~Q(pk__in=chosen.values(customer_column))
        if len(value) == 1:
            return Q(pk__in=chosen.values(customer_column))
        complete = (
            chosen.values(customer_column)
            .annotate(_matched=Count(item_column, distinct=True))
            .filter(_matched=len(value))
            .values(customer_column)
        )
        return Q(pk__in=complete)

    return build


def json_array_builder(column: str, key: str | None) -> Builder:
    def build(ctx: CompileContext, operator: str, value: Any) -> Q:
        if operator == "is_empty":
            return Q(JsonArrayIsEmpty(column, key))
        if operator == "is_not_empty":
            return ~Q(JsonArrayIsEmpty(column, key))
        has_any = Q(JsonArrayHas(column, key, value, all=False))
        if operator == "has_any":
            return has_any
        if operator == "has_none":
            return ~has_any
        return Q(JsonArrayHas(column, key, value, all=True))

    return build


def event_builder(ctx: CompileContext, operator: str, value: dict[str, Any]) -> Q:
    """Behaviour over ``core.Event`` by ``customer_id``: at least / at most N times (in the
    last D days, since a date, or ever), or not since. Events of customers merged into
    another count for the survivor (they stay append-only under the merged id)."""
    from siyu.core.models import Event

    events = Event.objects.for_tenant(ctx.tenant_id).filter(
        type=value["type"], customer_id__isnull=False
    )
    if value.get("within_days"):
        events = events.filter(occurred_at__gte=ctx.now - timedelta(days=value["within_days"]))
    elif value.get("since"):
        events = events.filter(occurred_at__gte=ctx.day_start(_as_date(value["since"])))
    events = events.order_by()
    who = "customer_id"
    if ctx.has_merges:
        events = events.annotate(_who=survivor_of(ctx, "customer_id"))
        who = "_who"
    if operator == "not_since":
        return ~Q(pk__in=events.values(who))
    count = value["count"]
    if operator == "at_least" and count == 1:
        return Q(pk__in=events.values(who))
    if operator == "at_least":
        return Q(pk__in=_having(events, who, gte=count))
    if count == 0:  # at most 0 times: never
        return ~Q(pk__in=events.values(who))
    return ~Q(pk__in=_having(events, who, gt=count))


def _having(events: Any, who: str, **condition: int) -> Any:
    lookup, threshold = next(iter(condition.items()))
    return (
        events.values(who)
        .annotate(_times=Count("*"))
        .filter(**{f"_times__{lookup}": threshold})
        .values(who)
    )


def survivor_of(ctx: CompileContext, column: str) -> Any:
    """The customer a row's ``column`` (a customer id) stands for now: the survivor when
    that customer was merged into another, else itself."""
    from siyu.customers.models import Customer

    merged = (
        Customer.objects.for_tenant(ctx.tenant_id)
        .filter(pk=OuterRef(column), merged_into__isnull=False)
        .order_by()
        .values("merged_into_id")[:1]
    )
    return Coalesce(Subquery(merged), F(column), output_field=BigIntegerField())
