"""What the rule builder (console) and API clients need to write rules: the tenant's fields
with their operators and value shapes, and the rows the pickers offer (tags, staff, groups).
Read only."""

from __future__ import annotations

from typing import Any

from siyu.segments.fields import (
    CATEGORIES,
    OPERATOR_LABELS,
    CompileContext,
    available_fields,
    value_shape,
)

MAX_PICKER_ROWS = 1000


def field_catalogue(actor: Any) -> list[dict[str, Any]]:
    """Every field a rule of the actor's tenant may use, for forms and API clients."""
    ctx = CompileContext(actor.tenant_id)
    rows = []
    for spec in available_fields(ctx):
        rows.append(
            {
                "name": spec.name,
                "label": str(spec.label),
                "kind": spec.kind,
                "category": spec.category,
                "category_label": str(CATEGORIES.get(spec.category, spec.category)),
                "operators": [
                    {
                        "operator": operator,
                        "label": str(OPERATOR_LABELS[operator]),
                        "value": value_shape(spec.kind, operator),
                    }
                    for operator in spec.allowed_operators
                ],
                "choices": (
                    [{"value": value, "label": str(label)} for value, label in spec.choices(ctx)]
                    if spec.choices
                    else None
                ),
                "picker": spec.picker,
                "help_text": str(spec.help_text or ""),
                "bounds": list(spec.bounds),
            }
        )
    return rows


def picker_options(actor: Any) -> dict[str, list[dict[str, Any]]]:
    """Rows the builder's pickers offer: the tenant's live tags by group, its active staff
    and its active groups (segments are the tenant's, so is what they may refer to)."""
    from siyu.community.models import Group
    from siyu.customers.models import Tag
    from siyu.tenancy.models import Staff

    tenant_id = actor.tenant_id
    tags = (
        Tag.objects.for_tenant(tenant_id)
        .filter(deleted=False, group__deleted=False)
        .select_related("group")
        .order_by("-group__order", "group_id", "-order", "id")[:MAX_PICKER_ROWS]
    )
    staff = (
        Staff.objects.for_tenant(tenant_id)
        .filter(status=Staff.Status.ACTIVE)
        .order_by("name", "id")[:MAX_PICKER_ROWS]
    )
    groups = (
        Group.objects.for_tenant(tenant_id)
        .filter(status=Group.Status.ACTIVE)
        .order_by("-id")[:MAX_PICKER_ROWS]
    )
    return {
        "tags": [{"id": t.pk, "label": t.name, "group": t.group.name} for t in tags],
        "staff": [{"id": s.pk, "label": s.name, "group": s.wecom_userid} for s in staff],
        "groups": [{"id": g.pk, "label": str(g), "group": ""} for g in groups],
    }
