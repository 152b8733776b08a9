"""The rule language → one Django ``Q`` over ``Customer`` (one SQL statement).

A rule is JSON::

    group     = {"op": "and" | "or", "conditions": [condition | group, ...]}   (≤ 5 deep)
    condition = {"field": "<name>", "operator": "<op>", "value": <value>}

``validate_rules`` checks a rule against the tenant's fields (``siyu.segments.fields``) and
returns it normalised (ids sorted, numbers as numbers, dates as ISO text), or raises
``InvalidInput`` whose ``details`` name the first bad path (``conditions[1].value``) and list
every error. ``compile_rules`` turns a rule into a ``Q``: column comparisons and semi-join
subqueries (``id IN (SELECT customer_id ...)``, grouped with ``HAVING`` for counts), so the
database evaluates the whole rule in one statement, never a Python loop over customers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import reduce
from operator import and_, or_
from typing import Any

from django.db.models import Q
from django.utils.translation import gettext as _

from siyu.core.errors import InvalidInput
from siyu.segments import customer_fields  # noqa: F401  (registers the built-in fields)
from siyu.segments.fields import (
    NO_VALUE,
    OPERATORS,
    CompileContext,
    FieldSpec,
    get_field,
    value_shape,
)

MAX_DEPTH = 5  # a group inside a group ... five levels at most
MAX_CONDITIONS = 100
MAX_LIST = 1000  # values of one "in" / "has any" list
MAX_TEXT = 200
MAX_DAYS = 3650
MAX_NEXT_DAYS = 366
EVENT_TYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
EMPTY_RULES: dict[str, Any] = {"op": "and", "conditions": []}


@dataclass
class RuleError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass
class _Validator:
    ctx: CompileContext
    errors: list[RuleError] = field(default_factory=list)
    conditions: int = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.append(RuleError(path, message))

    # -- groups -----------------------------------------------------------------------------
    def group(self, raw: Any, path: str, depth: int) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.fail(path, _("A group must be an object with 'op' and 'conditions'"))
            return None
        unknown = set(raw) - {"op", "conditions"}
        if unknown:
            self.fail(path, _("Unknown keys in a group: %(keys)s") % {"keys": _names(unknown)})
        op = raw.get("op", "and")
        if op not in ("and", "or"):
            self.fail(_join(path, "op"), _("'op' must be 'and' or 'or'"))
        children = raw.get("conditions", [])
        if not isinstance(children, list):
            self.fail(_join(path, "conditions"), _("'conditions' must be a list"))
            return None
        if not children and depth > 1:
            self.fail(_join(path, "conditions"), _("A group needs at least one condition"))
        normalised = []
        for index, child in enumerate(children):
            child_path = _join(path, f"conditions[{index}]")
            if isinstance(child, dict) and ("conditions" in child or "op" in child):
                if depth >= MAX_DEPTH:
                    self.fail(
                        child_path,
                        _("Groups may be nested at most %(depth)s levels deep")
                        % {"depth": MAX_DEPTH},
                    )
                    continue
                result = self.group(child, child_path, depth + 1)
            else:
                result = self.condition(child, child_path)
            if result is not None:
                normalised.append(result)
        return {"op": op if op in ("and", "or") else "and", "conditions": normalised}

    # -- conditions -------------------------------------------------------------------------
    def condition(self, raw: Any, path: str) -> dict[str, Any] | None:
        self.conditions += 1
        if self.conditions == MAX_CONDITIONS + 1:
            self.fail(
                path,
                _("A rule may have at most %(count)s conditions") % {"count": MAX_CONDITIONS},
            )
        if not isinstance(raw, dict):
            self.fail(path, _("A condition must be an object with field, operator and value"))
            return None
        unknown = set(raw) - {"field", "operator", "value"}
        if unknown:
            self.fail(path, _("Unknown keys in a condition: %(keys)s") % {"keys": _names(unknown)})
        name = raw.get("field")
        spec = get_field(self.ctx, name) if isinstance(name, str) else None
        if spec is None:
            self.fail(_join(path, "field"), _("Unknown field: %(field)s") % {"field": name})
            return None
        operator = raw.get("operator")
        if operator not in spec.allowed_operators:
            message = (
                _("Unknown operator: %(operator)s")
                if operator not in OPERATORS
                else _("The operator %(operator)s does not apply to %(field)s")
            )
            self.fail(_join(path, "operator"), message % {"operator": operator, "field": name})
            return None
        value_path = _join(path, "value")
        errors_before = len(self.errors)
        value = self.value(spec, operator, raw.get("value"), value_path)
        if len(self.errors) > errors_before:
            return None
        return {"field": spec.name, "operator": operator, "value": value}

    def value(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> Any:
        shape = value_shape(spec.kind, operator)
        if shape == NO_VALUE:
            return None
        cleaner = getattr(self, f"_clean_{shape}")
        return cleaner(spec, operator, raw, path)

    # -- one cleaner per value shape ----------------------------------------------------------
    def _clean_text(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> str | None:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str) or not raw.strip():
            self.fail(path, _("Enter a text value"))
            return None
        text = raw.strip()
        if len(text) > MAX_TEXT:
            self.fail(path, _("At most %(count)s characters") % {"count": MAX_TEXT})
            return None
        return text

    def _clean_texts(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> list | None:
        items = self._list(raw, path)
        if items is None:
            return None
        cleaned = [
            self._clean_text(spec, operator, item, f"{path}[{i}]") for i, item in enumerate(items)
        ]
        return _unique(cleaned) if None not in cleaned else None

    def _clean_choice(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> Any:
        allowed = {
            str(value): value for value, _label in (spec.choices(self.ctx) if spec.choices else ())
        }
        if not allowed:  # a choice field without a list of choices takes any text
            return self._clean_text(spec, operator, raw, path)
        key = (
            str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
        )
        if key is None or key not in allowed:
            self.fail(
                path,
                _("%(value)s is not one of the choices of %(field)s")
                % {"value": raw, "field": spec.name},
            )
            return None
        return allowed[key]

    def _clean_choices(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> list | None:
        items = self._list(raw, path)
        if items is None:
            return None
        cleaned = [
            self._clean_choice(spec, operator, item, f"{path}[{i}]") for i, item in enumerate(items)
        ]
        if any(item is None for item in cleaned):
            return None
        return _unique(cleaned)

    def _clean_number(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> Any:
        number = _number(raw)
        if number is None:
            self.fail(path, _("Enter a number"))
            return None
        if spec.integer and number != int(number):
            self.fail(path, _("Enter a whole number"))
            return None
        low, high = spec.bounds
        if (low is not None and number < low) or (high is not None and number > high):
            self.fail(
                path,
                _("Enter a number from %(low)s to %(high)s")
                % {"low": _plain(low), "high": _plain(high)},
            )
            return None
        return int(number) if number == int(number) else number

    def _clean_numbers(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> list | None:
        items = self._list(raw, path)
        if items is None:
            return None
        cleaned = [
            self._clean_number(spec, operator, item, f"{path}[{i}]") for i, item in enumerate(items)
        ]
        return _unique(cleaned) if None not in cleaned else None

    def _clean_number_range(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> Any:
        pair = self._pair(raw, path)
        if pair is None:
            return None
        low = self._clean_number(spec, operator, pair[0], f"{path}[0]")
        high = self._clean_number(spec, operator, pair[1], f"{path}[1]")
        if low is None or high is None:
            return None
        if low > high:
            self.fail(path, _("The first number must not be greater than the second"))
            return None
        return [low, high]

    def _clean_date(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> str | None:
        parsed = _iso_date(raw)
        if parsed is None:
            self.fail(path, _("Enter a date as YYYY-MM-DD"))
            return None
        return parsed.isoformat()

    def _clean_date_range(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> Any:
        pair = self._pair(raw, path)
        if pair is None:
            return None
        first = self._clean_date(spec, operator, pair[0], f"{path}[0]")
        last = self._clean_date(spec, operator, pair[1], f"{path}[1]")
        if first is None or last is None:
            return None
        if first > last:
            self.fail(path, _("The first date must not be after the second"))
            return None
        return [first, last]

    def _clean_days(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> int | None:
        low, high = (0, MAX_NEXT_DAYS) if operator == "next_days" else (1, MAX_DAYS)
        return self._whole(raw, path, low, high)

    def _clean_ids(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> list | None:
        items = self._list(raw, path)
        if items is None:
            return None
        ids = []
        for index, item in enumerate(items):
            number = _number(item)
            if number is None or number != int(number) or number < 1 or number > 2**63 - 1:
                self.fail(f"{path}[{index}]", _("Enter an id (a positive whole number)"))
                return None
            ids.append(int(number))
        ids = sorted(set(ids))
        if spec.known_ids is not None:
            unknown = sorted(set(ids) - spec.known_ids(self.ctx, ids))
            if unknown:
                self.fail(
                    path,
                    _("Unknown ids for %(field)s: %(ids)s")
                    % {"field": spec.name, "ids": ", ".join(map(str, unknown))},
                )
                return None
        return ids

    def _clean_event(self, spec: FieldSpec, operator: str, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            self.fail(path, _("Describe the behaviour as an object with 'type'"))
            return None
        unknown = set(raw) - {"type", "count", "within_days", "since"}
        if unknown:
            self.fail(path, _("Unknown keys: %(keys)s") % {"keys": _names(unknown)})
            return None
        cleaned: dict[str, Any] = {}
        kind = raw.get("type")
        if not isinstance(kind, str) or len(kind) > 80 or not EVENT_TYPE.match(kind.strip()):
            self.fail(f"{path}.type", _("Enter an event type such as order.paid"))
            return None
        cleaned["type"] = kind.strip()
        if operator != "not_since":
            count = self._whole(
                raw.get("count"), f"{path}.count", 1 if operator == "at_least" else 0, 100000
            )
            if count is None:
                return None
            cleaned["count"] = count
        within, since = raw.get("within_days"), raw.get("since")
        if within is not None and since is not None:
            self.fail(path, _("Give either within_days or since, not both"))
            return None
        if within is not None:
            days = self._whole(within, f"{path}.within_days", 1, MAX_DAYS)
            if days is None:
                return None
            cleaned["within_days"] = days
        elif since is not None:
            parsed = _iso_date(since)
            if parsed is None:
                self.fail(f"{path}.since", _("Enter a date as YYYY-MM-DD"))
                return None
            cleaned["since"] = parsed.isoformat()
        elif operator == "not_since":
            self.fail(path, _("Say since when: give since (a date) or within_days"))
            return None
        return cleaned

    # -- helpers ----------------------------------------------------------------------------
    def _list(self, raw: Any, path: str) -> list | None:
        if not isinstance(raw, list) or not raw:
            self.fail(path, _("Choose at least one value"))
            return None
        if len(raw) > MAX_LIST:
            self.fail(path, _("At most %(count)s values") % {"count": MAX_LIST})
            return None
        return raw

    def _pair(self, raw: Any, path: str) -> list | None:
        if not isinstance(raw, list) or len(raw) != 2:
            self.fail(path, _("Give two values: from and to"))
            return None
        return raw

    def _whole(self, raw: Any, path: str, low: int, high: int) -> int | None:
        number = _number(raw)
        if number is None or number != int(number) or not low <= number <= high:
            self.fail(
                path,
                _("Enter a whole number from %(low)s to %(high)s") % {"low": low, "high": high},
            )
            return None
        return int(number)


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _names(keys: set[Any]) -> str:
    return ", ".join(sorted(str(key) for key in keys))


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _plain(number: float | None) -> str:
    if number is None:
        return "…"
    return str(int(number)) if number == int(number) else str(number)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        number = float(raw)
    elif isinstance(raw, str) and raw.strip():
        try:
            number = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) and abs(number) < 1e15 else None


def _iso_date(raw: Any) -> date | None:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    if not isinstance(raw, str) or len(raw.strip()) != len("YYYY-MM-DD"):
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


# --- the contract ----------------------------------------------------------------------------
def _context(tenant: Any, now: datetime | None) -> CompileContext:
    tenant_id = getattr(tenant, "pk", tenant)
    return CompileContext(tenant_id) if now is None else CompileContext(tenant_id, now=now)


def _validate(ctx: CompileContext, rules: Any) -> dict[str, Any]:
    if rules is None or rules == {}:
        return dict(EMPTY_RULES, conditions=[])
    validator = _Validator(ctx)
    normalised = validator.group(rules, "", 1)
    if validator.errors or normalised is None:
        first = validator.errors[0] if validator.errors else RuleError("", _("Invalid rules"))
        raise InvalidInput(
            _("The rules are not valid: %(message)s") % {"message": first.message},
            code="invalid_rules",
            details={
                "path": first.path,
                "message": first.message,
                "errors": [error.as_dict() for error in validator.errors],
            },
        )
    return normalised


def validate_rules(tenant: Any, rules: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """The rules, normalised; ``InvalidInput`` (code ``invalid_rules``) naming the bad paths."""
    return _validate(_context(tenant, now), rules)


def compile_rules(tenant: Any, rules: Any, *, now: datetime | None = None) -> Q:
    """Validate and compile rules to a ``Q`` over ``Customer`` (relative dates from ``now``)."""
    return validate_and_compile(tenant, rules, now=now)[1]


def validate_and_compile(
    tenant: Any, rules: Any, *, now: datetime | None = None
) -> tuple[dict[str, Any], Q]:
    """The normalised rules and their ``Q``, validated once."""
    ctx = _context(tenant, now)
    normalised = _validate(ctx, rules)
    return normalised, _compile_group(ctx, normalised)


def _compile_group(ctx: CompileContext, group: dict[str, Any]) -> Q:
    """The group's conditions joined by AND / OR, cheapest first (see ``FieldSpec.cost``)."""
    children = sorted(group["conditions"], key=lambda child: _cost(ctx, child))
    parts = [
        _compile_group(ctx, child) if "conditions" in child else _compile_condition(ctx, child)
        for child in children
    ]
    if not parts:
        return Q()
    return reduce(and_ if group["op"] == "and" else or_, parts)


def _cost(ctx: CompileContext, node: dict[str, Any]) -> int:
    if "conditions" in node:
        return max((_cost(ctx, child) for child in node["conditions"]), default=0)
    spec = get_field(ctx, node["field"])
    return spec.cost if spec is not None else 0


def _compile_condition(ctx: CompileContext, condition: dict[str, Any]) -> Q:
    spec = get_field(ctx, condition["field"])
    assert spec is not None  # validated
    return spec.build(ctx, condition["operator"], condition["value"])


__all__ = ["RuleError", "compile_rules", "validate_and_compile", "validate_rules"]
