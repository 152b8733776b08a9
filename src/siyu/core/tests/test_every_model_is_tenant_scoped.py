"""A guard for every model a later capability adds: business data is tenant-scoped."""

from django.apps import apps

from siyu.core.scoping import TenantManager, TenantQuerySet, TenantScopedModel

# Models that are not one tenant's business data, and why.
NOT_TENANT_DATA = {
    "tenancy.tenant": "the tenant itself",
    "tenancy.staff_roles": "join table of two tenant-scoped models",
}


def siyu_models():
    for model in apps.get_models(include_auto_created=True):
        if model.__module__.startswith("siyu."):
            yield model


def test_every_siyu_model_is_tenant_scoped_or_listed_with_a_reason():
    unscoped = [
        model._meta.label_lower
        for model in siyu_models()
        if not issubclass(model, TenantScopedModel)
        and model._meta.label_lower not in NOT_TENANT_DATA
    ]
    assert unscoped == []


def test_every_tenant_scoped_model_refuses_unscoped_queries():
    for model in siyu_models():
        if issubclass(model, TenantScopedModel):
            manager = model._default_manager
            assert isinstance(manager.get_queryset(), TenantQuerySet), model
            assert isinstance(manager, TenantManager) or hasattr(manager, "for_tenant"), model


# Uniqueness that is global on purpose, and why.
GLOBALLY_UNIQUE = {
    "tenancy.apikey.prefix": "random, identifies a key across the platform",
    "tenancy.apikey.key_hash": "an API key authenticates before its tenant is known",
    "tenancy.staff.user": "a console login belongs to exactly one staff member",
    "core.handlerrun.handler_run_unique": "events are already one tenant's",
}


def test_every_unique_rule_of_tenant_data_includes_the_tenant():
    """A unique rule without the tenant would let one brand's data block another's."""
    offending = []
    for model in siyu_models():
        if not issubclass(model, TenantScopedModel):
            continue
        label = model._meta.label_lower
        for constraint in model._meta.constraints:
            fields = getattr(constraint, "fields", ())
            if fields and "tenant" not in fields:
                offending.append(f"{label}.{constraint.name}")
        offending.extend(
            f"{label}.{field.name}"
            for field in model._meta.fields
            if field.unique and not field.primary_key
        )
    assert sorted(set(offending) - set(GLOBALLY_UNIQUE)) == []
