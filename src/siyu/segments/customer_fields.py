"""The built-in fields of the rule language: the customer's profile, relationship,
behaviour, custom fields and RFM layer. Later domains register theirs the same way
(see ``siyu.segments.fields``)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

from siyu.segments.fields import (
    AGGREGATE,
    BIRTHDAY,
    CHOICE,
    COLUMN,
    DATE,
    DATETIME,
    EVENT,
    EXPRESSION,
    IDS,
    MULTI_CHOICE,
    NUMBER,
    STAFF,
    TEXT,
    CompileContext,
    Expression,
    FieldSource,
    FieldSpec,
    JsonNumber,
    JsonText,
    column_builder,
    compare,
    event_builder,
    json_array_builder,
    membership_builder,
    register_field,
    register_field_source,
    related_builder,
)


def _choices(choices: Any) -> Any:
    return lambda ctx: [(value, label) for value, label in choices]


def _known(model_path: str) -> Any:
    def known(ctx: CompileContext, ids: list[int]) -> set[int]:
        from django.apps import apps

        model = apps.get_model(model_path)
        return set(
            model._default_manager.for_tenant(ctx.tenant_id)
            .filter(pk__in=ids)
            .values_list("pk", flat=True)
        )

    return known


# --- relationship rows (read only: the customers and community domains write them) ------------
def _customer_tags(ctx: CompileContext) -> Any:
    from siyu.customers.models import CustomerTag

    return CustomerTag.objects.for_tenant(ctx.tenant_id)


def _active_follows(ctx: CompileContext) -> Any:
    from siyu.customers.models import Follow

    return Follow.objects.for_tenant(ctx.tenant_id).filter(status=Follow.Status.ACTIVE)


def _group_memberships(ctx: CompileContext) -> Any:
    from siyu.community.models import GroupMember

    return GroupMember.objects.for_tenant(ctx.tenant_id).filter(
        status=GroupMember.Status.ACTIVE, customer__isnull=False
    )


def _register_customer_fields() -> None:
    from siyu.customers.models import AgeBand, Customer, LifecycleStage

    text = (
        ("name", _("name")),
        ("province", _("province")),
        ("city", _("city")),
        ("corp_name", _("company")),
        ("position", _("position")),
    )
    for name, label in text:
        register_field(
            FieldSpec(name, label, TEXT, column_builder(name, TEXT, blank_text=True), cost=COLUMN)
        )
    register_field(
        FieldSpec(
            "gender",
            _("gender"),
            CHOICE,
            column_builder("gender", CHOICE),
            cost=COLUMN,
            operators=("eq", "ne", "in", "not_in"),
            choices=_choices(Customer.Gender.choices),
        )
    )
    register_field(
        FieldSpec(
            "age_band",
            _("age band"),
            CHOICE,
            column_builder("age_band", CHOICE, blank_text=True),
            cost=COLUMN,
            choices=_choices(AgeBand.choices),
        )
    )
    register_field(
        FieldSpec(
            "birthday",
            _("birthday"),
            BIRTHDAY,
            column_builder("birthday", BIRTHDAY, nullable=True),
            cost=COLUMN,
        )
    )
    register_field(
        FieldSpec(
            "interests",
            _("interests"),
            MULTI_CHOICE,
            json_array_builder("interests", None),
            cost=EXPRESSION,
        )
    )
    register_field(
        FieldSpec(
            "phone",
            _("phone"),
            TEXT,
            column_builder("phone_hash", TEXT, blank_text=True),
            cost=COLUMN,
            operators=("is_empty", "is_not_empty"),
            help_text=_("Whether a phone number is on file"),
        )
    )
    register_field(
        FieldSpec(
            "type",
            _("customer type"),
            CHOICE,
            column_builder("type", CHOICE),
            cost=COLUMN,
            operators=("eq", "ne"),
            choices=_choices(Customer.Type.choices),
        )
    )

    # -- relationship --------------------------------------------------------------------------
    relationship = {"category": "relationship"}
    register_field(
        FieldSpec(
            "first_added_at",
            _("first added"),
            DATETIME,
            column_builder("first_added_at", DATETIME, nullable=True),
            cost=COLUMN,
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "last_interaction_at",
            _("last interaction"),
            DATETIME,
            column_builder("last_interaction_at", DATETIME, nullable=True),
            cost=COLUMN,
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "lifecycle_stage",
            _("lifecycle stage"),
            CHOICE,
            column_builder("lifecycle_stage", CHOICE),
            cost=COLUMN,
            operators=("eq", "ne", "in", "not_in"),
            choices=_choices(LifecycleStage.choices),
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "status",
            _("friendship status"),
            CHOICE,
            column_builder("status", CHOICE),
            cost=COLUMN,
            operators=("eq", "ne"),
            choices=_choices(Customer.Status.choices),
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "source_state",
            _("source channel"),
            TEXT,
            column_builder("source_state", TEXT, blank_text=True),
            cost=COLUMN,
            help_text=_("The state of the contact way of the first add; prefixes match too"),
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "owner",
            _("owner"),
            STAFF,
            column_builder("owner_id", STAFF, nullable=True),
            cost=COLUMN,
            known_ids=_known("tenancy.Staff"),
            picker="staff",
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "followed_by",
            _("friends with staff"),
            IDS,
            membership_builder(_active_follows, "customer_id", "staff_id"),
            known_ids=_known("tenancy.Staff"),
            picker="staff",
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "tags",
            _("tags"),
            IDS,
            membership_builder(_customer_tags, "customer_id", "tag_id"),
            known_ids=_known("customers.Tag"),
            picker="tags",
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "groups",
            _("customer groups"),
            IDS,
            membership_builder(_group_memberships, "customer_id", "group_id"),
            known_ids=_known("community.Group"),
            picker="groups",
            **relationship,
        )
    )
    register_field(
        FieldSpec(
            "event",
            _("did something"),
            EVENT,
            event_builder,
            category="behaviour",
            cost=AGGREGATE,
            help_text=_("An event type such as order.paid, with how often and since when"),
        )
    )


def _register_rfm_fields() -> None:
    from siyu.segments.models import CustomerRFM
    from siyu.segments.rfm import LAYERS

    rfm = {"category": "rfm"}
    for column, label in (
        ("r_score", _("R score")),
        ("f_score", _("F score")),
        ("m_score", _("M score")),
    ):
        register_field(
            FieldSpec(
                f"rfm.{column}",
                label,
                NUMBER,
                related_builder(CustomerRFM, "customer_id", column),
                operators=("eq", "ne", "lt", "gt", "lte", "gte", "between", "in", "not_in"),
                bounds=(1, 5),
                integer=True,
                **rfm,
            )
        )
    for column, label in (
        ("recency_days", _("days since the last purchase")),
        ("frequency", _("purchases in the RFM window")),
        ("monetary_fen", _("spend in the RFM window (fen)")),
    ):
        register_field(
            FieldSpec(
                f"rfm.{column}",
                label,
                NUMBER,
                related_builder(CustomerRFM, "customer_id", column),
                bounds=(0, None),
                integer=True,
                **rfm,
            )
        )
    register_field(
        FieldSpec(
            "rfm.layer",
            _("RFM layer"),
            CHOICE,
            related_builder(CustomerRFM, "customer_id", "layer", CHOICE),
            operators=("eq", "ne", "in", "not_in"),
            choices=_choices(LAYERS),
            **rfm,
        )
    )


# --- custom fields: custom.<key>, typed by CustomField.type ----------------------------------
CUSTOM_PREFIX = "custom."


def _custom_choices(row: Any) -> Any:
    """``CustomField.choices`` as (value, label): plain strings or {"value", "label"} dicts."""
    pairs = []
    for item in row.choices or ():
        if isinstance(item, dict) and "value" in item:
            pairs.append((str(item["value"]), str(item.get("label") or item["value"])))
        elif isinstance(item, (list, tuple)) and item:
            pairs.append((str(item[0]), str(item[-1])))
        else:
            pairs.append((str(item), str(item)))
    return lambda ctx: pairs


def _custom_spec(row: Any) -> FieldSpec:
    from siyu.customers.models import CustomField

    key = row.key
    name = f"{CUSTOM_PREFIX}{key}"
    common = {"category": "custom", "help_text": row.help_text, "cost": EXPRESSION}
    if row.type == CustomField.Type.NUMBER:
        build = compare(Expression(JsonNumber("custom", key)), NUMBER)
        return FieldSpec(name, row.label, NUMBER, build, **common)
    if row.type == CustomField.Type.DATE:
        build = compare(Expression(JsonText("custom", key), blank_text=True), DATE, iso_dates=True)
        return FieldSpec(name, row.label, DATE, build, **common)
    if row.type == CustomField.Type.CHOICE:
        build = compare(Expression(JsonText("custom", key), blank_text=True), CHOICE)
        return FieldSpec(name, row.label, CHOICE, build, choices=_custom_choices(row), **common)
    if row.type == CustomField.Type.MULTI_CHOICE:
        build = json_array_builder("custom", key)
        return FieldSpec(
            name, row.label, MULTI_CHOICE, build, choices=_custom_choices(row), **common
        )
    build = compare(Expression(JsonText("custom", key), blank_text=True), TEXT)
    return FieldSpec(name, row.label, TEXT, build, **common)


def _resolve_custom(ctx: CompileContext, name: str) -> FieldSpec | None:
    row = ctx.custom_fields.get(name[len(CUSTOM_PREFIX) :])
    return _custom_spec(row) if row is not None else None


def _list_custom(ctx: CompileContext) -> list[FieldSpec]:
    rows = sorted(ctx.custom_fields.values(), key=lambda row: (row.order, row.pk))
    return [_custom_spec(row) for row in rows if row.is_active]


_register_customer_fields()
_register_rfm_fields()
register_field_source(FieldSource(CUSTOM_PREFIX, _resolve_custom, _list_custom))
