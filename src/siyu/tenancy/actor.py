"""Who is acting: the tenant, the staff, their permissions and their data scope.

Built once per request (console session or API key) or per CLI command, and passed to
services and to ``Model.objects.for_actor(actor)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from siyu.core.scoping import DataScope

if TYPE_CHECKING:
    from siyu.tenancy.models import ApiKey, Staff, Tenant


@dataclass(frozen=True)
class Actor:
    tenant: Tenant
    staff: Staff | None
    data_scope: DataScope
    department_ids: frozenset[int] = frozenset()
    permission_patterns: tuple[str, ...] = ()
    is_superuser: bool = False
    user: Any = None
    api_key: ApiKey | None = None
    api_scopes: frozenset[str] | None = None  # None: not an API key
    channel: str = "console"
    ip_address: str | None = field(default=None, compare=False)

    @property
    def tenant_id(self) -> int:
        return self.tenant.pk

    @property
    def staff_id(self) -> int | None:
        return self.staff.pk if self.staff else None

    def has_perm(self, permission: str) -> bool:
        """A console permission (``app_label.codename``) through the actor's roles."""
        import fnmatch

        if self.is_superuser:
            return True
        return any(fnmatch.fnmatchcase(permission, p) for p in self.permission_patterns)

    def can(self, scope: str) -> bool:
        """An API scope: the key must carry it and, when it acts as a staff, they the perm."""
        from siyu.tenancy.roles import API_SCOPES

        permission = API_SCOPES[scope]
        if self.api_scopes is not None:
            if scope not in self.api_scopes:
                return False
            return self.staff is None or self.has_perm(permission)
        return self.has_perm(permission)
