"""The audit log's only writer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from siyu.core.models import AuditEntry

if TYPE_CHECKING:
    from django.db.models import Model

    from siyu.tenancy.actor import Actor


def record_audit(
    actor: Actor,
    action: str,
    obj: Model | None = None,
    *,
    changes: dict[str, Any] | None = None,
    tenant: Any = None,
) -> AuditEntry:
    """Append who did what. Call inside the service's transaction so both land or neither.

    ``changes`` maps a field to ``[before, after]``; callers mask secrets before passing them.
    """
    user = actor.user if getattr(actor.user, "pk", None) else None
    return AuditEntry.objects.create(
        tenant=tenant or actor.tenant,
        user=user,
        staff=actor.staff,
        api_key=actor.api_key,
        channel=actor.channel,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=changes or {},
        ip_address=actor.ip_address,
    )


def diff(instance: Any, new_values: dict[str, Any], *, secret_fields: frozenset[str] = frozenset()):
    """Return ``{field: [before, after]}`` for fields whose value changes (secrets masked)."""
    from siyu.core.crypto import mask_secret

    changes: dict[str, list[Any]] = {}
    for field, after in new_values.items():
        before = getattr(instance, field)
        if before != after:
            if field in secret_fields:
                changes[field] = [mask_secret(before), mask_secret(after)]
            else:
                changes[field] = [_plain(before), _plain(after)]
    return changes


def _plain(value: Any) -> Any:
    if hasattr(value, "pk"):
        return str(value)
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    return str(value)
