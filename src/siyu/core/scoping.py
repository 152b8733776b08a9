"""Tenant scoping: the one base class every business model inherits.

Why this exists: in a multi-tenant schema a single forgotten ``.filter(tenant=...)`` leaks one
brand's customers to another. So the default manager of a tenant-scoped model returns a
queryset that *refuses to run* until it has been narrowed to one tenant, through
``for_tenant(tenant)`` / ``for_actor(actor)``, or explicitly opened with
``unscoped(reason)`` for platform jobs that really span tenants (sweeps, migrations).

Filtering on the tenant column (``filter(tenant=t)``, which is also what Django's related
managers do for ``tenant.staff_members.all()``) counts as scoping. Django's internals
(foreign-key access, cascades) use the model's *base* manager, a plain ``Manager``, and are
unaffected.

The data scope of a role (own / department / tenant) is applied by ``for_actor``: a model
says which field points at the owning staff through ``data_scope_owner``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from django.db import models

if TYPE_CHECKING:
    from collections.abc import Iterable


class UnscopedQueryError(RuntimeError):
    """Raised when tenant data would be read or written without naming the tenant."""


class DataScope(models.TextChoices):
    """How much of a tenant's data a role sees; wider scopes include the narrower ones."""

    OWN = "own", "own customers"
    DEPARTMENT = "department", "department"
    TENANT = "tenant", "whole tenant"

    @property
    def width(self) -> int:
        return {"own": 0, "department": 1, "tenant": 2}[self.value]


class ScopedViewer(Protocol):
    """What ``for_actor`` needs to know about whoever is looking (see tenancy.actor.Actor)."""

    tenant_id: int
    staff_id: int | None
    data_scope: DataScope
    department_ids: frozenset[int]


_TENANT_KEYS = {"tenant", "tenant_id", "tenant__id", "tenant__pk"}


class TenantQuerySet(models.QuerySet):
    """A queryset that only runs once narrowed to one tenant (or explicitly opened)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tenant_scoped = False

    # -- scoping ----------------------------------------------------------------------------
    def for_tenant(self, tenant: Any) -> TenantQuerySet:
        """Rows of one tenant (a Tenant or its id)."""
        tenant_id = getattr(tenant, "pk", tenant)
        if tenant_id is None:
            raise UnscopedQueryError("for_tenant() needs a saved tenant")
        return self.filter(tenant_id=tenant_id)

    def for_actor(self, viewer: ScopedViewer) -> TenantQuerySet:
        """Rows of the viewer's tenant, narrowed to the viewer's data scope."""
        queryset = self.for_tenant(viewer.tenant_id)
        owner = getattr(self.model, "data_scope_owner", None)
        if owner is None or viewer.data_scope == DataScope.TENANT:
            return queryset
        if viewer.data_scope == DataScope.DEPARTMENT:
            path = "department_id" if owner == "self" else f"{owner}__department_id"
            return queryset.filter(**{f"{path}__in": viewer.department_ids})
        if viewer.staff_id is None:  # an "own" scope with nobody to own anything
            return queryset.none()
        path = "pk" if owner == "self" else f"{owner}_id"
        return queryset.filter(**{path: viewer.staff_id})

    def unscoped(self, reason: str) -> TenantQuerySet:
        """Open the queryset across tenants; ``reason`` documents why at the call site."""
        if not reason.strip():
            raise ValueError("unscoped() needs a reason")
        clone = self._chain()
        clone._tenant_scoped = True
        return clone

    # -- bookkeeping ------------------------------------------------------------------------
    def _clone(self) -> TenantQuerySet:
        clone = super()._clone()
        clone._tenant_scoped = self._tenant_scoped
        return clone

    def _filter_or_exclude(self, negate: bool, args: Any, kwargs: dict) -> TenantQuerySet:
        clone = super()._filter_or_exclude(negate, args, kwargs)
        if not negate and _TENANT_KEYS.intersection(kwargs):
            clone._tenant_scoped = True
        return clone

    def _require_scope(self) -> None:
        if not self._tenant_scoped:
            raise UnscopedQueryError(
                f"{self.model.__name__} is tenant data: use .for_tenant(tenant), "
                ".for_actor(actor) or .unscoped(reason)"
            )

    # -- every way a queryset reaches the database --------------------------------------------
    def _fetch_all(self) -> None:
        if self._result_cache is None:
            self._require_scope()
        super()._fetch_all()

    def iterator(self, *args: Any, **kwargs: Any) -> Iterable[Any]:
        self._require_scope()
        return super().iterator(*args, **kwargs)

    def count(self) -> int:
        if self._result_cache is None:
            self._require_scope()
        return super().count()

    def exists(self) -> bool:
        if self._result_cache is None:
            self._require_scope()
        return super().exists()

    def aggregate(self, *args: Any, **kwargs: Any) -> dict:
        self._require_scope()
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        self._require_scope()
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        self._require_scope()
        return super().delete()

    def in_bulk(self, *args: Any, **kwargs: Any) -> dict:
        self._require_scope()
        return super().in_bulk(*args, **kwargs)

    def explain(self, *args: Any, **kwargs: Any) -> str:
        self._require_scope()
        return super().explain(*args, **kwargs)


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """Default manager of tenant data; see the module docstring."""

    def get_queryset(self) -> TenantQuerySet:
        queryset = super().get_queryset()
        # Django builds related managers (``staff.roles``, ``department.children``) as
        # subclasses of this one, bound to an ``instance``: scope them to its tenant.
        instance_tenant_id = getattr(getattr(self, "instance", None), "tenant_id", None)
        if instance_tenant_id is not None:
            queryset = queryset.filter(tenant_id=instance_tenant_id)
        return queryset


class TenantScopedModel(models.Model):
    """Base of every business model: a ``tenant`` column and the scoping manager.

    ``data_scope_owner`` names the foreign key to the staff who owns a row (``"self"`` for
    the Staff model itself); ``None`` means the rows are shared by the whole tenant.
    """

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")

    objects = TenantManager()

    data_scope_owner: ClassVar[str | None] = None

    class Meta:
        abstract = True
