"""The rule language: every operator on every kind of field, nested groups, validation with
precise paths, one SQL statement per rule, merged-away customers never matching."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from siyu.core.errors import InvalidInput
from siyu.segments.services import matching_customers, validate_rules
from siyu.segments.tests.support_segments import (
    NOW,
    build_population,
    make_tag,
    set_profile,
)
from siyu.testing.factories import CustomerFactory, TenantFactory


@pytest.fixture
def people(tenant):
    return build_population(tenant)


def resolve(value: Any, people: Any) -> Any:
    """``"$vip"`` placeholders in a case become the ids of the population's rows."""
    if isinstance(value, str) and value.startswith("$"):
        return getattr(people, value[1:]).pk
    if isinstance(value, list):
        return [resolve(item, people) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, people) for key, item in value.items()}
    return value


def matching(people: Any, *conditions: dict[str, Any], op: str = "and", now=NOW) -> set[str]:
    rules = {"op": op, "conditions": [resolve(c, people) for c in conditions]}
    return people.names(matching_customers(people.tenant, rules, now=now))


def cond(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


# (field, operator, value, the customers that match) — see support_segments.build_population.
CASES = [
    # text
    ("city", "eq", "上海", {"ann"}),
    ("city", "ne", "上海", {"bob", "cat", "dan"}),
    ("city", "in", ["上海", "北京"], {"ann", "bob"}),
    ("city", "not_in", ["上海", "北京"], {"cat", "dan"}),
    ("city", "contains", "上海", {"ann", "dan"}),
    ("city", "not_contains", "上海", {"bob", "cat"}),
    ("city", "starts_with", "上海", {"ann", "dan"}),
    ("city", "is_empty", None, {"cat"}),
    ("city", "is_not_empty", None, {"ann", "bob", "dan"}),
    ("province", "eq", "北京", {"bob"}),
    ("name", "eq", "Ann", {"ann"}),
    ("name", "contains", "a", {"ann", "cat", "dan"}),
    # source channel: prefixes, with LIKE's wildcards taken literally
    ("source_state", "starts_with", "ch_wx", {"ann", "dan"}),
    ("source_state", "starts_with", "ch%", set()),
    ("source_state", "eq", "ch_dy_2", {"bob"}),
    ("source_state", "is_empty", None, {"cat"}),
    # choices
    ("gender", "eq", 1, {"bob", "dan"}),
    ("gender", "eq", "2", {"ann"}),
    ("gender", "ne", 1, {"ann", "cat"}),
    ("gender", "in", [0, 2], {"ann", "cat"}),
    ("gender", "not_in", [1], {"ann", "cat"}),
    ("age_band", "eq", "25-34", {"ann"}),
    ("age_band", "in", ["25-34", "35-44"], {"ann", "bob"}),
    ("age_band", "not_in", ["25-34"], {"bob", "cat", "dan"}),
    ("age_band", "is_empty", None, {"cat", "dan"}),
    ("age_band", "is_not_empty", None, {"ann", "bob"}),
    ("lifecycle_stage", "in", ["active", "silent"], {"ann", "bob"}),
    ("lifecycle_stage", "ne", "new", {"ann", "bob", "dan"}),
    ("lifecycle_stage", "eq", "at_risk", {"dan"}),
    ("type", "eq", 1, {"ann", "bob", "cat", "dan"}),
    # birthdays (today is 2026-11-23)
    ("birthday", "this_month", None, {"ann"}),
    ("birthday", "next_days", 30, {"ann", "dan"}),
    ("birthday", "next_days", 2, {"ann"}),
    ("birthday", "next_days", 1, set()),
    ("birthday", "eq", "1985-02-28", {"bob"}),
    ("birthday", "before", "1990-01-01", {"bob"}),
    ("birthday", "after", "1990-11-25", {"dan"}),
    ("birthday", "between", ["1985-01-01", "1990-12-31"], {"ann", "bob"}),
    ("birthday", "is_empty", None, {"cat"}),
    ("birthday", "is_not_empty", None, {"ann", "bob", "dan"}),
    # moments, with relative windows and days in the tenant's time zone
    ("first_added_at", "in_last_days", 30, {"ann", "cat"}),
    ("first_added_at", "not_in_last_days", 30, {"bob", "dan"}),
    ("first_added_at", "before", "2026-10-04", {"bob", "dan"}),
    ("first_added_at", "after", "2026-11-20", {"cat"}),
    ("first_added_at", "eq", "2026-11-13", {"ann"}),
    ("first_added_at", "between", ["2026-11-01", "2026-11-22"], {"ann", "cat"}),
    ("last_interaction_at", "in_last_days", 7, {"ann"}),
    ("last_interaction_at", "not_in_last_days", 7, {"bob", "cat", "dan"}),
    ("last_interaction_at", "is_empty", None, {"cat"}),
    ("last_interaction_at", "is_not_empty", None, {"ann", "bob", "dan"}),
    # a list of strings
    ("interests", "has_any", ["yoga"], {"ann"}),
    ("interests", "has_any", ["coffee", "running"], {"ann", "bob", "dan"}),
    ("interests", "has_all", ["yoga", "coffee"], {"ann"}),
    ("interests", "has_none", ["coffee"], {"cat", "dan"}),
    ("interests", "is_empty", None, {"cat"}),
    ("interests", "is_not_empty", None, {"ann", "bob", "dan"}),
    ("phone", "is_not_empty", None, {"ann"}),
    ("phone", "is_empty", None, {"bob", "cat", "dan"}),
    # owner staff
    ("owner", "in", ["$s1"], {"ann", "cat"}),
    ("owner", "not_in", ["$s1"], {"bob", "dan"}),
    ("owner", "is_empty", None, {"dan"}),
    ("owner", "is_not_empty", None, {"ann", "bob", "cat"}),
    # friendships with staff
    ("followed_by", "has_any", ["$s2"], {"ann", "bob"}),
    ("followed_by", "has_all", ["$s1", "$s2"], {"ann"}),
    ("followed_by", "has_none", ["$s1"], {"bob", "dan"}),
    ("followed_by", "is_empty", None, {"dan"}),
    # tags
    ("tags", "has_any", ["$vip", "$old"], {"ann", "bob", "dan"}),
    ("tags", "has_all", ["$vip", "$new"], {"ann"}),
    ("tags", "has_all", ["$vip"], {"ann", "bob"}),
    ("tags", "has_none", ["$vip"], {"cat", "dan"}),
    ("tags", "is_empty", None, {"cat"}),
    ("tags", "is_not_empty", None, {"ann", "bob", "dan"}),
    # group membership (bob left G2)
    ("groups", "has_any", ["$g2"], {"ann", "dan"}),
    ("groups", "has_all", ["$g1", "$g2"], {"ann"}),
    ("groups", "has_none", ["$g1"], {"cat", "dan"}),
    ("groups", "is_empty", None, {"cat"}),
    ("groups", "is_not_empty", None, {"ann", "bob", "dan"}),
    # behaviour (eve's two purchases count for ann, whom she was merged into)
    ("event", "at_least", {"type": "order.paid", "count": 2, "within_days": 30}, {"ann"}),
    ("event", "at_least", {"type": "order.paid", "count": 5, "within_days": 30}, {"ann"}),
    ("event", "at_least", {"type": "order.paid", "count": 6, "within_days": 30}, set()),
    ("event", "at_least", {"type": "order.paid", "count": 1, "within_days": 30}, {"ann", "dan"}),
    ("event", "at_least", {"type": "order.paid", "count": 1}, {"ann", "bob", "dan"}),
    (
        "event",
        "at_least",
        {"type": "order.paid", "count": 1, "since": "2026-09-01"},
        {"ann", "bob", "dan"},
    ),
    (
        "event",
        "at_least",
        {"type": "order.paid", "count": 1, "since": "2026-10-01"},
        {"ann", "dan"},
    ),
    (
        "event",
        "at_most",
        {"type": "order.paid", "count": 1, "within_days": 30},
        {"bob", "cat", "dan"},
    ),
    ("event", "at_most", {"type": "order.paid", "count": 0, "within_days": 30}, {"bob", "cat"}),
    ("event", "not_since", {"type": "order.paid", "since": "2026-10-24"}, {"bob", "cat"}),
    ("event", "not_since", {"type": "message.received", "within_days": 7}, {"ann", "bob", "cat"}),
    ("event", "at_least", {"type": "message.received", "count": 1, "within_days": 7}, {"dan"}),
    # custom fields by their type: number (dan's "5" is text, not a number)
    ("custom.vip_level", "gt", 3, {"bob"}),
    ("custom.vip_level", "gte", 3, {"ann", "bob"}),
    ("custom.vip_level", "eq", 3, {"ann"}),
    ("custom.vip_level", "ne", 3, {"bob", "cat", "dan"}),
    ("custom.vip_level", "lt", 5, {"ann"}),
    ("custom.vip_level", "lte", 7.5, {"ann", "bob"}),
    ("custom.vip_level", "between", [3, 7.5], {"ann", "bob"}),
    ("custom.vip_level", "in", [3, 7.5], {"ann", "bob"}),
    ("custom.vip_level", "not_in", [3], {"bob", "cat", "dan"}),
    ("custom.vip_level", "is_empty", None, {"cat", "dan"}),
    ("custom.vip_level", "is_not_empty", None, {"ann", "bob"}),
    # ... choice
    ("custom.skin", "eq", "dry", {"ann", "dan"}),
    ("custom.skin", "ne", "dry", {"bob", "cat"}),
    ("custom.skin", "in", ["oily", "normal"], {"bob"}),
    ("custom.skin", "not_in", ["dry"], {"bob", "cat"}),
    ("custom.skin", "is_empty", None, {"cat"}),
    # ... text
    ("custom.nickname", "eq", "小安", {"ann"}),
    ("custom.nickname", "contains", "安", {"ann"}),
    ("custom.nickname", "starts_with", "小", {"ann"}),
    ("custom.nickname", "is_empty", None, {"bob", "cat", "dan"}),
    # ... date
    ("custom.joined", "after", "2026-01-01", {"ann"}),
    ("custom.joined", "before", "2026-01-01", {"bob"}),
    ("custom.joined", "eq", "2026-10-01", {"ann"}),
    ("custom.joined", "between", ["2025-01-01", "2025-12-31"], {"bob"}),
    ("custom.joined", "in_last_days", 60, {"ann"}),
    ("custom.joined", "not_in_last_days", 60, {"bob", "cat", "dan"}),
    ("custom.joined", "is_empty", None, {"cat", "dan"}),
    # ... multiple choice
    ("custom.channels", "has_any", ["tmall"], {"ann"}),
    ("custom.channels", "has_any", ["jd"], {"ann", "bob"}),
    ("custom.channels", "has_all", ["tmall", "jd"], {"ann"}),
    ("custom.channels", "has_none", ["jd"], {"cat", "dan"}),
    ("custom.channels", "is_empty", None, {"cat", "dan"}),
    ("custom.channels", "is_not_empty", None, {"ann", "bob"}),
]


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)],
)
def test_each_operator_on_each_field_kind(people, field, operator, value, expected):
    # given a population whose every attribute is known
    # when one condition is evaluated
    # then exactly the expected customers match (never eve, merged into ann)
    assert matching(people, cond(field, operator, value)) == expected


def test_no_conditions_match_every_customer_not_merged_away(people):
    assert matching(people) == {"ann", "bob", "cat", "dan"}
    assert people.names(matching_customers(people.tenant, {}, now=NOW)) == {
        "ann",
        "bob",
        "cat",
        "dan",
    }


def test_nested_and_or_groups(people):
    # given (city 上海 or 北京) and (no VIP tag, or (male and ordered in the last 30 days))
    rules = [
        {"op": "or", "conditions": [cond("city", "eq", "上海"), cond("city", "eq", "北京")]},
        {
            "op": "or",
            "conditions": [
                cond("tags", "has_none", ["$vip"]),
                {
                    "op": "and",
                    "conditions": [
                        cond("gender", "eq", 1),
                        cond("event", "at_least", {"type": "order.paid", "count": 1}),
                    ],
                },
            ],
        },
    ]
    # then only bob: ann is a VIP woman, cat and dan live elsewhere
    assert matching(people, *rules) == {"bob"}
    # and "or" at the top takes either side
    assert matching(people, *rules, op="or") == {"ann", "bob", "cat", "dan"}


def test_groups_nest_five_deep_not_six(people):
    def nested(depth: int) -> dict[str, Any]:
        group: dict[str, Any] = {"op": "and", "conditions": [cond("city", "eq", "上海")]}
        for _level in range(depth - 1):
            group = {"op": "or", "conditions": [group]}
        return group

    assert matching_customers(people.tenant, nested(5), now=NOW).count() == 1
    with pytest.raises(InvalidInput) as refused:
        validate_rules(people.tenant, nested(6))
    assert (
        refused.value.details["path"]
        == "conditions[0].conditions[0].conditions[0].conditions[0].conditions[0]"
    )


def test_a_rule_is_one_sql_statement(people, django_assert_num_queries):
    # given a rule over tags, groups, events, a custom field, a birthday and RFM
    rules = resolve(
        {
            "op": "or",
            "conditions": [
                cond("tags", "has_all", ["$vip", "$new"]),
                cond("groups", "has_any", ["$g1"]),
                cond("event", "at_least", {"type": "order.paid", "count": 2, "within_days": 30}),
                cond("custom.channels", "has_any", ["jd"]),
                {
                    "op": "and",
                    "conditions": [
                        cond("birthday", "next_days", 30),
                        cond("rfm.layer", "in", ["important_value"]),
                    ],
                },
            ],
        },
        people,
    )
    customers = matching_customers(people.tenant, rules, now=NOW)
    # when it is counted, then the database answers in one query
    with django_assert_num_queries(1):
        assert customers.count() == 2


def test_birthdays_in_the_next_days_wrap_over_new_year(tenant):
    # given birthdays on 2 January and 30 December; today is 20 December
    jan = set_profile(CustomerFactory(tenant=tenant), birthday=date(1990, 1, 2))
    dec = set_profile(CustomerFactory(tenant=tenant), birthday=date(1991, 12, 30))
    set_profile(CustomerFactory(tenant=tenant), birthday=date(1992, 1, 20))
    now = datetime(2026, 12, 20, 4, 0, tzinfo=UTC)
    rules = {"op": "and", "conditions": [cond("birthday", "next_days", 14)]}
    # then both birthdays within the next 14 days match, the one in late January does not
    assert set(matching_customers(tenant, rules, now=now)) == {jan, dec}


def test_a_29_february_birthday_counts_on_28_february_in_common_years(tenant):
    leap = set_profile(CustomerFactory(tenant=tenant), birthday=date(2000, 2, 29))
    rules = {"op": "and", "conditions": [cond("birthday", "next_days", 3)]}
    # 2027 is a common year: the window 25–28 February includes the 29th's birthday
    assert list(matching_customers(tenant, rules, now=datetime(2027, 2, 25, 4, tzinfo=UTC))) == [
        leap
    ]
    # in 2028 (a leap year) the 28th is not enough, the 29th is
    assert not matching_customers(tenant, rules, now=datetime(2028, 2, 25, 4, tzinfo=UTC)).exists()
    rules["conditions"][0]["value"] = 4
    assert matching_customers(tenant, rules, now=datetime(2028, 2, 25, 4, tzinfo=UTC)).exists()


def test_days_are_the_tenants_days_not_utc(tenant):
    # given a customer added at 01:00 on 23 November in Shanghai (17:00 on the 22nd in UTC)
    customer = CustomerFactory(tenant=tenant)
    set_profile(customer, first_added_at=datetime(2026, 11, 22, 17, 0, tzinfo=UTC))

    def on(day: str) -> bool:
        rules = {"op": "and", "conditions": [cond("first_added_at", "eq", day)]}
        return matching_customers(tenant, rules, now=NOW).exists()

    assert on("2026-11-23") and not on("2026-11-22")


def test_rules_refer_only_to_the_tenants_own_tags_and_staff(people):
    # given a tag of another tenant
    other = TenantFactory(slug="brand-z")
    foreign = make_tag(other, "外部")
    # when a rule names it, then it is an unknown id at that path
    with pytest.raises(InvalidInput) as refused:
        validate_rules(
            people.tenant, {"op": "and", "conditions": [cond("tags", "has_any", [foreign.pk])]}
        )
    assert refused.value.details["path"] == "conditions[0].value"
    assert str(foreign.pk) in refused.value.details["message"]


def test_normalised_rules(people):
    rules = resolve(
        {
            "conditions": [
                cond("tags", "has_any", ["$vip", "$vip", "$new"]),
                cond("custom.vip_level", "between", ["3", 7.0]),
                cond("city", "in", [" 上海 ", "上海", "北京"]),
                cond("city", "is_empty", "ignored"),
                cond("event", "at_least", {"type": "order.paid", "count": "2"}),
            ]
        },
        people,
    )
    assert validate_rules(people.tenant, rules) == {
        "op": "and",
        "conditions": [
            cond("tags", "has_any", sorted([people.vip.pk, people.new.pk])),
            cond("custom.vip_level", "between", [3, 7]),
            cond("city", "in", ["上海", "北京"]),
            cond("city", "is_empty", None),
            cond("event", "at_least", {"type": "order.paid", "count": 2}),
        ],
    }


# (a rule with one bad part, the path the error names)
INVALID = [
    ({"op": "xor", "conditions": []}, "op"),
    ({"op": "and", "conditions": "city"}, "conditions"),
    ([cond("city", "eq", "x")], ""),
    ({"conditions": [cond("nope", "eq", "x")]}, "conditions[0].field"),
    ({"conditions": [cond("city", "has_any", ["x"])]}, "conditions[0].operator"),
    ({"conditions": [cond("city", "like", "x")]}, "conditions[0].operator"),
    ({"conditions": [cond("city", "eq", "")]}, "conditions[0].value"),
    ({"conditions": [cond("city", "eq", "x" * 201)]}, "conditions[0].value"),
    ({"conditions": [cond("city", "in", [])]}, "conditions[0].value"),
    ({"conditions": [cond("tags", "has_any", [999999])]}, "conditions[0].value"),
    ({"conditions": [cond("tags", "has_any", ["x"])]}, "conditions[0].value[0]"),
    ({"conditions": [cond("custom.vip_level", "between", [5, 1])]}, "conditions[0].value"),
    ({"conditions": [cond("custom.vip_level", "gt", "many")]}, "conditions[0].value"),
    ({"conditions": [cond("custom.vip_level", "between", [1])]}, "conditions[0].value"),
    ({"conditions": [cond("birthday", "eq", "2026-13-01")]}, "conditions[0].value"),
    (
        {"conditions": [cond("birthday", "between", ["2026-01-02", "2026-01-01"])]},
        "conditions[0].value",
    ),
    ({"conditions": [cond("first_added_at", "in_last_days", 0)]}, "conditions[0].value"),
    ({"conditions": [cond("birthday", "next_days", 400)]}, "conditions[0].value"),
    (
        {"conditions": [cond("event", "at_least", {"type": "order.paid"})]},
        "conditions[0].value.count",
    ),
    (
        {"conditions": [cond("event", "at_least", {"type": "Order Paid", "count": 1})]},
        "conditions[0].value.type",
    ),
    ({"conditions": [cond("event", "not_since", {"type": "order.paid"})]}, "conditions[0].value"),
    (
        {
            "conditions": [
                cond("event", "at_most", {"type": "order.paid", "count": 1, "since": "x"})
            ]
        },
        "conditions[0].value.since",
    ),
    (
        {
            "conditions": [
                cond(
                    "event",
                    "at_least",
                    {"type": "a", "count": 1, "since": "2026-01-01", "within_days": 3},
                )
            ]
        },
        "conditions[0].value",
    ),
    ({"conditions": [cond("gender", "eq", 7)]}, "conditions[0].value"),
    ({"conditions": [cond("gender", "is_empty")]}, "conditions[0].operator"),
    ({"conditions": [cond("custom.skin", "eq", "greasy")]}, "conditions[0].value"),
    ({"conditions": [cond("rfm.r_score", "eq", 6)]}, "conditions[0].value"),
    ({"conditions": [cond("rfm.layer", "eq", "whales")]}, "conditions[0].value"),
    ({"conditions": [{"op": "and", "conditions": []}]}, "conditions[0].conditions"),
    (
        {
            "conditions": [
                cond("city", "eq", "x"),
                {"op": "or", "conditions": [cond("city", "eq", 5), "x"]},
            ]
        },
        "conditions[1].conditions[1]",
    ),
    (
        {"conditions": [{"field": "city", "operator": "eq", "value": "x", "extra": 1}]},
        "conditions[0]",
    ),
]


@pytest.mark.parametrize(("rules", "path"), INVALID, ids=[p or "root" for _r, p in INVALID])
def test_invalid_rules_name_the_bad_path(people, rules, path):
    with pytest.raises(InvalidInput) as refused:
        validate_rules(people.tenant, rules)
    assert refused.value.code == "invalid_rules"
    assert refused.value.details["path"] == path
    assert refused.value.details["errors"][0] == {
        "path": path,
        "message": refused.value.details["message"],
    }


def test_every_error_of_a_rule_is_listed(people):
    rules = {
        "op": "and",
        "conditions": [
            cond("city", "eq", ""),
            cond("nope", "eq", 1),
            {"op": "or", "conditions": [cond("gender", "eq", 9)]},
        ],
    }
    with pytest.raises(InvalidInput) as refused:
        validate_rules(people.tenant, rules)
    assert [error["path"] for error in refused.value.details["errors"]] == [
        "conditions[0].value",
        "conditions[1].field",
        "conditions[2].conditions[0].value",
    ]


def test_a_rule_has_at_most_100_conditions(people):
    rules = {"op": "or", "conditions": [cond("city", "eq", f"c{n}") for n in range(101)]}
    with pytest.raises(InvalidInput) as refused:
        validate_rules(people.tenant, rules)
    assert refused.value.details["path"] == "conditions[100]"
