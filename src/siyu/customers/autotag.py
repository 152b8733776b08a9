"""Auto-tag rules (自动打标签): put a tag on every customer who matches a rule, e.g.
"price tier bought: 9.9 trial", and optionally take it off those who stop matching.

A rule is a tag plus rules in the segment rule language (``siyu.segments.services``). A run
is set-based SQL, never a loop over customers deciding one by one: the customers matching and
not carrying the tag yet (one query), and, with ``remove_when_unmatched``, those carrying it
and no longer matching (one query); both lists are then tagged / untagged in chunks through
``siyu.customers.tagging.apply_tag_changes``, which records the timeline events and mirrors
the tag to WeCom like any tagging. Runs happen hourly (``run_auto_tag_rules``) and on demand
("run now"); each records its counts on the rule. Running twice in a row changes nothing the
second time.

With ``remove_when_unmatched`` the rule owns its tag: it also takes the tag off customers
who got it another way (by hand, from WeCom) once they stop matching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from siyu.core.audit import diff, record_audit
from siyu.core.errors import InvalidInput, NotFound
from siyu.customers.models import AutoTagRule, CustomerTag, Tag
from siyu.customers.tagging import CHUNK, apply_tag_changes, live_tags

logger = logging.getLogger(__name__)

MAX_RULE_NAME = 100


@dataclass(frozen=True)
class RuleRun:
    """What one run of a rule changed."""

    rule_id: int
    tagged: int
    untagged: int
    skipped: bool = False  # the rule is inactive or its tag was deleted


# --- writes -----------------------------------------------------------------------------------
def _validated_rules(tenant: Any, rules: Any) -> dict[str, Any]:
    from siyu.segments.services import validate_rules

    if not isinstance(rules, dict) or not rules:
        raise InvalidInput(_("Rules are required"), details={"rules": rules})
    return validate_rules(tenant, rules)


def _clean_name(value: Any) -> str:
    name = ("" if value is None else str(value)).strip()
    if not name or len(name) > MAX_RULE_NAME:
        raise InvalidInput(
            _("A rule name is 1 to %(limit)d characters") % {"limit": MAX_RULE_NAME},
            details={"name": value},
        )
    return name


def _rule(actor: Any, rule: AutoTagRule | int) -> AutoTagRule:
    rule_id = getattr(rule, "pk", rule)
    found = (
        AutoTagRule.objects.for_tenant(actor.tenant)
        .select_related("tag")
        .filter(pk=rule_id)
        .first()
    )
    if found is None:
        raise NotFound(_("Auto-tag rule not found"), details={"id": rule_id})
    return found


@transaction.atomic
def create_rule(
    actor: Any,
    *,
    name: str,
    tag: Tag | int,
    rules: dict[str, Any],
    remove_when_unmatched: bool = False,
    is_active: bool = True,
) -> AutoTagRule:
    """Create an auto-tag rule (it runs with the next hourly run, or "run now")."""
    (tag,) = live_tags(actor, [tag])
    rule = AutoTagRule.objects.for_tenant(actor.tenant).create(
        tenant=actor.tenant,
        name=_clean_name(name),
        tag=tag,
        rules=_validated_rules(actor.tenant, rules),
        remove_when_unmatched=bool(remove_when_unmatched),
        is_active=bool(is_active),
    )
    record_audit(actor, "autotag_rule.created", rule, changes={"tag": [None, tag.name]})
    return rule


@transaction.atomic
def update_rule(actor: Any, rule: AutoTagRule | int, **values: Any) -> AutoTagRule:
    """Change a rule's name, tag, rules, removal or active flag (only those given)."""
    rule = _rule(actor, rule)
    allowed = {"name", "tag", "rules", "remove_when_unmatched", "is_active"}
    unknown = set(values) - allowed
    if unknown:
        raise InvalidInput(
            _("Unknown fields: %(fields)s") % {"fields": ", ".join(sorted(unknown))},
            details={"fields": sorted(unknown)},
        )
    clean: dict[str, Any] = {}
    if values.get("name") is not None:
        clean["name"] = _clean_name(values["name"])
    if values.get("tag") is not None:
        (clean["tag"],) = live_tags(actor, [values["tag"]])
    if values.get("rules") is not None:
        clean["rules"] = _validated_rules(actor.tenant, values["rules"])
    for flag in ("remove_when_unmatched", "is_active"):
        if values.get(flag) is not None:
            clean[flag] = bool(values[flag])
    changes = diff(rule, clean)
    if not changes:
        return rule
    for key, value in clean.items():
        setattr(rule, key, value)
    rule.save(update_fields=list(clean))
    record_audit(actor, "autotag_rule.updated", rule, changes=changes)
    return rule


@transaction.atomic
def delete_rule(actor: Any, rule: AutoTagRule | int) -> None:
    """Delete a rule; the tags it put on stay (untag them in bulk if they should go)."""
    rule = _rule(actor, rule)
    record_audit(actor, "autotag_rule.deleted", rule)
    AutoTagRule.objects.for_tenant(actor.tenant).filter(pk=rule.pk).delete()


# --- runs -------------------------------------------------------------------------------------
def run_rule(rule: AutoTagRule | int, *, actor: Any = None, tenant: Any = None) -> RuleRun:
    """Evaluate one rule now and tag / untag the difference; records the counts on the rule.

    ``actor`` is who asked ("run now"), else the platform itself (the hourly run). Rules are
    the tenant's, so a run covers the whole tenant whoever started it.
    """
    from siyu.segments.services import matching_customers
    from siyu.tenancy.services import system_actor

    if actor is None:
        tenant = tenant if tenant is not None else rule.tenant
        actor = system_actor(tenant, channel="system")
    rule = _rule(actor, rule)
    if not rule.is_active or rule.tag.deleted:
        return RuleRun(rule.pk, 0, 0, skipped=True)
    tag = rule.tag
    matching = matching_customers(actor.tenant, rule.rules)
    carriers = CustomerTag.objects.for_tenant(actor.tenant).filter(tag=tag)
    to_tag = list(
        matching.exclude(pk__in=carriers.values("customer_id"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    to_untag: list[int] = []
    if rule.remove_when_unmatched:
        to_untag = list(
            carriers.exclude(customer_id__in=matching.values("pk"))
            .order_by("customer_id")
            .values_list("customer_id", flat=True)
        )
    extra = {"rule_id": rule.pk, "rule_name": rule.name}
    tagged = untagged = 0
    for start in range(0, len(to_tag), CHUNK):
        chunk = to_tag[start : start + CHUNK]
        tagged += apply_tag_changes(actor, chunk, add=[tag], via="autotag", extra=extra).tagged
    for start in range(0, len(to_untag), CHUNK):
        chunk = to_untag[start : start + CHUNK]
        untagged += apply_tag_changes(
            actor, chunk, remove=[tag], via="autotag", extra=extra
        ).untagged
    AutoTagRule.objects.for_tenant(actor.tenant).filter(pk=rule.pk).update(
        last_run_at=timezone.now(), last_tagged=tagged, last_untagged=untagged
    )
    logger.info("auto-tag rule %s: +%d −%d", rule.pk, tagged, untagged)
    return RuleRun(rule.pk, tagged, untagged)


@db_task(retries=2, retry_delay=60)
def run_rule_task(tenant_id: int, rule_id: int) -> None:
    """Queued: run one rule (the hourly sweep and "run now" in the background)."""
    from siyu.tenancy.models import Tenant

    tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
    if tenant is None:
        return
    try:
        run_rule(rule_id, tenant=tenant)
    except NotFound:
        return  # deleted meanwhile


@db_periodic_task(crontab(minute="20"))
def run_auto_tag_rules() -> int:
    """Every hour: queue a run of every active rule of every active tenant."""
    rules = (
        AutoTagRule.objects.unscoped("hourly auto-tag sweep over all tenants")
        .filter(is_active=True, tenant__is_active=True, tag__deleted=False)
        .values_list("tenant_id", "pk")
    )
    queued = 0
    for tenant_id, rule_id in rules:
        run_rule_task(tenant_id, rule_id)
        queued += 1
    return queued
