"""The only writers of tenants, departments, roles, staff, console users and API keys.

Each function validates, writes, records its event and its audit entry in one transaction.
Console views, API handlers and CLI commands all call these.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.core.audit import diff, record_audit
from siyu.core.crypto import mask_secret
from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.events import record_event
from siyu.core.scoping import DataScope
from siyu.tenancy.actor import Actor
from siyu.tenancy.models import ApiKey, Department, Role, Staff, Tenant
from siyu.tenancy.roles import API_SCOPES, BUILTIN_ROLES

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$")
CORP_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
USERID_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
AES_KEY_LENGTH = 43  # WeCom's EncodingAESKey: 43 characters of base64 without padding
API_KEY_PREFIX = "siyu_"
SECRET_FIELDS = frozenset(
    {
        "wecom_contact_secret",
        "wecom_callback_token",
        "wecom_callback_aes_key",
        "wecom_agent_secret",
    }
)


# --- actors -----------------------------------------------------------------------------
def system_actor(tenant: Tenant, *, channel: str = "system") -> Actor:
    """The platform itself acting on a tenant (CLI, simulator, scheduled jobs)."""
    return Actor(
        tenant=tenant,
        staff=None,
        data_scope=DataScope.TENANT,
        permission_patterns=("*",),
        is_superuser=True,
        channel=channel,
    )


def actor_for_staff(
    staff: Staff, *, user: Any = None, channel: str = "console", ip_address: str | None = None
) -> Actor:
    """The effective rights of a staff member: union of role permissions, widest scope."""
    roles = list(staff.roles.all())
    scope = max(
        (DataScope(r.data_scope) for r in roles), key=lambda s: s.width, default=DataScope.OWN
    )
    return Actor(
        tenant=staff.tenant,
        staff=staff,
        data_scope=scope,
        department_ids=frozenset(department_subtree(staff)),
        permission_patterns=tuple(p for role in roles for p in role.permissions),
        is_superuser=bool(user is not None and user.is_superuser),
        user=user,
        channel=channel,
        ip_address=ip_address,
    )


def actor_for_user(user: Any, *, ip_address: str | None = None) -> Actor | None:
    """The console actor of a logged-in user, or None if they belong to no active staff."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    staff = (
        Staff._base_manager.select_related("tenant", "department")
        .filter(user=user, status=Staff.Status.ACTIVE, tenant__is_active=True)
        .first()
    )
    if staff is None:
        return None
    return actor_for_staff(staff, user=user, ip_address=ip_address)


def department_subtree(staff: Staff) -> set[int]:
    """Ids of the staff's department and all departments below it."""
    if staff.department_id is None:
        return set()
    children: dict[int | None, list[int]] = {}
    for dept_id, parent_id in Department.objects.for_tenant(staff.tenant_id).values_list(
        "id", "parent_id"
    ):
        children.setdefault(parent_id, []).append(dept_id)
    found, frontier = set(), [staff.department_id]
    while frontier:
        current = frontier.pop()
        if current not in found:
            found.add(current)
            frontier.extend(children.get(current, ()))
    return found


def staff_by_userid(tenant: Tenant | int, userids: Iterable[str]) -> dict[str, Staff]:
    """The tenant's staff (departed ones included) by WeCom userid; unknown ids are left out.

    A read helper for other domains (WeCom sync, customers, community) resolving the
    userids WeCom sends.
    """
    wanted = {userid for userid in userids if userid}
    if not wanted:
        return {}
    return {
        staff.wecom_userid: staff
        for staff in Staff.objects.for_tenant(tenant).filter(wecom_userid__in=wanted)
    }


# --- tenants ----------------------------------------------------------------------------
def _validate_wecom_settings(values: dict[str, str]) -> None:
    """Refuse malformed WeCom settings; details name the field but never echo a secret."""
    corp_id = values.get("wecom_corp_id")
    if corp_id and not CORP_ID_PATTERN.match(corp_id):
        raise InvalidInput(
            _("WeCom corp id may hold only letters, digits, '-' and '_'"),
            details={"wecom_corp_id": corp_id},
        )
    aes_key = values.get("wecom_callback_aes_key")
    if aes_key and (len(aes_key) != AES_KEY_LENGTH or not re.fullmatch(r"[A-Za-z0-9+/]+", aes_key)):
        raise InvalidInput(
            _("The callback EncodingAESKey must be 43 base64 characters"),
            details={"wecom_callback_aes_key": mask_secret(aes_key)},
        )
    token = values.get("wecom_callback_token")
    if token and not re.fullmatch(r"[A-Za-z0-9]{1,32}", token):
        raise InvalidInput(
            _("The callback token must be 1 to 32 letters or digits"),
            details={"wecom_callback_token": mask_secret(token)},
        )
    agent_id = values.get("wecom_agent_id")
    if agent_id and not agent_id.isdigit():
        raise InvalidInput(_("The app AgentId is a number"), details={"wecom_agent_id": agent_id})


@transaction.atomic
def create_tenant(
    *,
    slug: str,
    name: str,
    by: Actor | None = None,
    wecom_corp_id: str = "",
    wecom_contact_secret: str = "",
    wecom_callback_token: str = "",
    wecom_callback_aes_key: str = "",
    wecom_agent_id: str = "",
    wecom_agent_secret: str = "",
) -> Tenant:
    """Create a brand with its built-in roles."""
    slug = slug.strip().lower()
    name = name.strip()
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            _(
                "Slug must be 3-50 lowercase letters, digits or '-', "
                "not starting or ending with '-'"
            ),
            details={"slug": slug},
        )
    if not name:
        raise InvalidInput(_("Tenant name is required"), details={"name": ""})
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(
            _("A tenant with slug '%(slug)s' already exists") % {"slug": slug},
            details={"slug": slug},
        )
    secrets_given = {
        "wecom_corp_id": wecom_corp_id.strip(),
        "wecom_contact_secret": wecom_contact_secret.strip(),
        "wecom_callback_token": wecom_callback_token.strip(),
        "wecom_callback_aes_key": wecom_callback_aes_key.strip(),
        "wecom_agent_id": wecom_agent_id.strip(),
        "wecom_agent_secret": wecom_agent_secret.strip(),
    }
    _validate_wecom_settings(secrets_given)
    tenant = Tenant.objects.create(slug=slug, name=name, **secrets_given)
    Role.objects.bulk_create(
        Role(
            tenant=tenant,
            code=template.code,
            name=str(template.name),
            permissions=list(template.permissions),
            data_scope=template.data_scope,
            is_builtin=True,
        )
        for template in BUILTIN_ROLES
    )
    actor = by or system_actor(tenant)
    record_event(tenant, "tenant.created", payload={"slug": slug}, source=actor.channel)
    record_audit(actor, "tenant.created", tenant, tenant=tenant)
    return tenant


@transaction.atomic
def update_tenant(tenant: Tenant, *, by: Actor, **values: Any) -> Tenant:
    """Change a tenant's name, status or WeCom settings; blank secrets keep the old value."""
    allowed = {"name", "is_active", "wecom_corp_id", "wecom_agent_id", *SECRET_FIELDS}
    unknown = set(values) - allowed
    if unknown:
        raise InvalidInput(
            _("Unknown tenant fields: %(fields)s") % {"fields": ", ".join(sorted(unknown))}
        )
    values = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
    values = {k: v for k, v in values.items() if not (k in SECRET_FIELDS and not v)}
    if "name" in values and not values["name"]:
        raise InvalidInput(_("Tenant name is required"), details={"name": ""})
    _validate_wecom_settings(values)
    changes = diff(tenant, values, secret_fields=SECRET_FIELDS)
    if not changes:
        return tenant
    for field, value in values.items():
        setattr(tenant, field, value)
    tenant.save(update_fields=list(values))
    record_event(tenant, "tenant.updated", payload={"fields": sorted(changes)}, source=by.channel)
    record_audit(by, "tenant.updated", tenant, changes=changes, tenant=tenant)
    return tenant


# --- departments ------------------------------------------------------------------------
@transaction.atomic
def create_department(
    tenant: Tenant,
    *,
    name: str,
    by: Actor,
    parent: Department | None = None,
    wecom_id: int | None = None,
) -> Department:
    name = name.strip()
    if not name:
        raise InvalidInput(_("Department name is required"), details={"name": ""})
    if parent is not None and parent.tenant_id != tenant.pk:
        raise NotFound(_("Parent department not found"))
    departments = Department.objects.for_tenant(tenant)
    if wecom_id is not None and departments.filter(wecom_id=wecom_id).exists():
        raise Conflict(
            _("Department with WeCom id %(wecom_id)s already exists") % {"wecom_id": wecom_id},
            details={"wecom_id": wecom_id},
        )
    department = departments.create(tenant=tenant, name=name, parent=parent, wecom_id=wecom_id)
    record_audit(by, "department.created", department)
    return department


def _descendant_ids(department: Department) -> set[int]:
    """Ids of the departments below ``department`` (not itself)."""
    children: dict[int | None, list[int]] = {}
    for dept_id, parent_id in Department.objects.for_tenant(department.tenant_id).values_list(
        "id", "parent_id"
    ):
        children.setdefault(parent_id, []).append(dept_id)
    found: set[int] = set()
    frontier = list(children.get(department.pk, ()))
    while frontier:
        current = frontier.pop()
        if current not in found:
            found.add(current)
            frontier.extend(children.get(current, ()))
    return found


@transaction.atomic
def update_department(
    department: Department,
    *,
    by: Actor,
    name: str | None = None,
    parent: Department | type[Ellipsis] | None = ...,
    wecom_id: int | type[Ellipsis] | None = ...,
) -> Department:
    """Rename a department, move it under another one or change its WeCom id.

    A department cannot move below itself: the data scope walks the tree downwards and a
    cycle would make it endless.
    """
    values: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise InvalidInput(_("Department name is required"), details={"name": ""})
        values["name"] = name.strip()
    if parent is not ...:
        if parent is not None:
            if parent.tenant_id != department.tenant_id:
                raise NotFound(_("Parent department not found"))
            if parent.pk == department.pk or parent.pk in _descendant_ids(department):
                raise InvalidInput(
                    _("A department cannot be moved below itself"), details={"parent": parent.pk}
                )
        values["parent"] = parent
    if wecom_id is not ...:
        taken = (
            Department.objects.for_tenant(department.tenant_id)
            .filter(wecom_id=wecom_id)
            .exclude(pk=department.pk)
        )
        if wecom_id is not None and taken.exists():
            raise Conflict(
                _("Department with WeCom id %(wecom_id)s already exists") % {"wecom_id": wecom_id},
                details={"wecom_id": wecom_id},
            )
        values["wecom_id"] = wecom_id
    changes = diff(department, values)
    if not changes:
        return department
    for field, value in values.items():
        setattr(department, field, value)
    department.save(update_fields=list(values))
    record_audit(by, "department.updated", department, changes=changes)
    return department


# --- roles ------------------------------------------------------------------------------
ROLE_CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# ``app_label.codename`` or a glob over it (``customers.*``, ``*.view_*``), or ``*`` for all.
PERMISSION_PATTERN = re.compile(r"^(\*|[a-z0-9_*?\[\]]+\.[a-z0-9_*?\[\]]+)$")
ROLE_MANAGEMENT_PERMISSION = "tenancy.change_role"


def _clean_permissions(permissions: Iterable[str]) -> list[str]:
    cleaned = list(dict.fromkeys(p.strip() for p in permissions if p and p.strip()))
    invalid = [p for p in cleaned if not PERMISSION_PATTERN.match(p)]
    if invalid:
        raise InvalidInput(
            _(
                "Invalid permission pattern(s): %(invalid)s. Use app_label.codename, "
                "a glob such as customers.* or *.view_*, or * for everything"
            )
            % {"invalid": ", ".join(invalid)},
            details={"permissions": invalid},
        )
    return cleaned


def _clean_data_scope(data_scope: str) -> str:
    if data_scope not in DataScope.values:
        raise InvalidInput(
            _("Unknown data scope '%(scope)s'; known: %(known)s")
            % {"scope": data_scope, "known": ", ".join(DataScope.values)},
            details={"data_scope": data_scope},
        )
    return data_scope


@transaction.atomic
def create_role(
    tenant: Tenant,
    *,
    code: str,
    name: str,
    by: Actor,
    permissions: Sequence[str] = (),
    data_scope: str = DataScope.OWN,
) -> Role:
    """Add a tenant-specific role next to the built-in ones."""
    code = code.strip().lower()
    name = name.strip()
    if not ROLE_CODE_PATTERN.match(code):
        raise InvalidInput(
            _("Role code must be 1-40 lowercase letters, digits, '-' or '_'"),
            details={"code": code},
        )
    if not name:
        raise InvalidInput(_("Role name is required"), details={"name": ""})
    roles = Role.objects.for_tenant(tenant)
    if roles.filter(code=code).exists():
        raise Conflict(
            _("A role with code '%(code)s' already exists") % {"code": code},
            details={"code": code},
        )
    permissions = _clean_permissions(permissions)
    data_scope = _clean_data_scope(data_scope)
    _ensure_within_own_rights(by, permissions, data_scope)
    role = roles.create(
        tenant=tenant, code=code, name=name, permissions=permissions, data_scope=data_scope
    )
    record_audit(
        by,
        "role.created",
        role,
        changes={"permissions": [None, role.permissions], "data_scope": [None, role.data_scope]},
    )
    return role


def _keeps_role_management(by: Actor, role: Role, new_permissions: list[str]) -> bool:
    """Whether ``by`` may still manage roles once ``role`` holds ``new_permissions``."""
    if by.is_superuser or by.staff is None or not by.staff.roles.filter(pk=role.pk).exists():
        return True
    patterns = list(new_permissions)
    for other in by.staff.roles.exclude(pk=role.pk):
        patterns.extend(other.permissions)
    return any(fnmatch.fnmatchcase(ROLE_MANAGEMENT_PERMISSION, p) for p in patterns)


@transaction.atomic
def update_role(
    role: Role,
    *,
    by: Actor,
    name: str | None = None,
    permissions: Sequence[str] | None = None,
    data_scope: str | None = None,
) -> Role:
    """Rename a role or change its permissions or data scope (built-in roles included).

    Refuses a change that would take away the editor's own right to manage roles, so that
    a tenant cannot lock every administrator out by accident.
    """
    values: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise InvalidInput(_("Role name is required"), details={"name": ""})
        values["name"] = name.strip()
    if permissions is not None:
        values["permissions"] = _clean_permissions(permissions)
        if not _keeps_role_management(by, role, values["permissions"]):
            raise InvalidInput(
                _("You cannot take away your own right to manage roles"),
                details={"permissions": values["permissions"]},
            )
    if data_scope is not None:
        values["data_scope"] = _clean_data_scope(data_scope)
    changes = diff(role, values)
    if not changes:
        return role
    added = set(values.get("permissions", ())) - set(role.permissions)
    _ensure_within_own_rights(by, added, values.get("data_scope", DataScope.OWN))
    for field, value in values.items():
        setattr(role, field, value)
    role.save(update_fields=list(values))
    record_audit(by, "role.updated", role, changes=changes)
    return role


# --- staff ------------------------------------------------------------------------------
def _ensure_within_own_rights(by: Actor, permissions: Iterable[str], data_scope: str) -> None:
    """Refuse to grant more than the granting actor holds (no privilege escalation).

    A permission pattern is within the actor's rights when, read as a name, it matches one of
    the actor's own patterns (``customers.view_*`` is within ``customers.*``); a data scope
    when it is no wider than the actor's.
    """
    if by.is_superuser:
        return
    beyond = sorted(
        pattern
        for pattern in permissions
        if not any(fnmatch.fnmatchcase(pattern, own) for own in by.permission_patterns)
    )
    if beyond:
        raise Forbidden(
            _("You cannot grant permissions you do not hold yourself: %(permissions)s")
            % {"permissions": ", ".join(beyond)},
            details={"permissions": beyond},
        )
    if DataScope(data_scope).width > DataScope(by.data_scope).width:
        raise Forbidden(
            _("You cannot grant a data scope wider than your own"),
            details={"data_scope": data_scope},
        )


def _ensure_may_grant_roles(by: Actor, roles: Iterable[Role]) -> None:
    for role in roles:
        _ensure_within_own_rights(by, role.permissions, role.data_scope)


def _roles_by_code(tenant: Tenant, codes: Iterable[str]) -> list[Role]:
    codes = list(dict.fromkeys(codes))
    roles = list(Role.objects.for_tenant(tenant).filter(code__in=codes))
    missing = sorted(set(codes) - {role.code for role in roles})
    if missing:
        known = ", ".join(Role.objects.for_tenant(tenant).values_list("code", flat=True))
        raise InvalidInput(
            _("Unknown role(s): %(missing)s; known roles: %(known)s")
            % {"missing": ", ".join(missing), "known": known},
            details={"roles": missing},
        )
    return roles


@transaction.atomic
def add_staff(
    tenant: Tenant,
    *,
    wecom_userid: str,
    name: str,
    by: Actor,
    department: Department | None = None,
    role_codes: Sequence[str] = ("sales",),
) -> Staff:
    """Add a WeCom member to the brand's staff with the given roles."""
    wecom_userid = wecom_userid.strip()
    name = name.strip()
    if not USERID_PATTERN.match(wecom_userid):
        raise InvalidInput(
            _("WeCom userid must be 1-64 letters, digits or _ . @ -"),
            details={"wecom_userid": wecom_userid},
        )
    if not name:
        raise InvalidInput(_("Staff name is required"), details={"name": ""})
    if department is not None and department.tenant_id != tenant.pk:
        raise NotFound(_("Department not found"))
    staff_rows = Staff.objects.for_tenant(tenant)
    if staff_rows.filter(wecom_userid=wecom_userid).exists():
        raise Conflict(
            _("Staff with WeCom userid '%(wecom_userid)s' already exists")
            % {"wecom_userid": wecom_userid},
            details={"wecom_userid": wecom_userid},
        )
    roles = _roles_by_code(tenant, role_codes)
    _ensure_may_grant_roles(by, roles)
    staff = staff_rows.create(
        tenant=tenant, wecom_userid=wecom_userid, name=name, department=department
    )
    staff.roles.set(roles)
    record_event(
        tenant,
        "staff.added",
        staff=staff,
        payload={"wecom_userid": wecom_userid, "roles": [r.code for r in roles]},
        source=by.channel,
    )
    record_audit(by, "staff.added", staff, changes={"roles": [[], [r.code for r in roles]]})
    return staff


@transaction.atomic
def update_staff(
    staff: Staff,
    *,
    by: Actor,
    name: str | None = None,
    department: Department | type[Ellipsis] | None = ...,
    role_codes: Sequence[str] | None = None,
) -> Staff:
    """Rename a staff member, move them to a department or change their roles."""
    values: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise InvalidInput(_("Staff name is required"), details={"name": ""})
        values["name"] = name.strip()
    if department is not ...:
        if department is not None and department.tenant_id != staff.tenant_id:
            raise NotFound(_("Department not found"))
        values["department"] = department
    changes = diff(staff, values)
    if role_codes is not None:
        roles = _roles_by_code(staff.tenant, role_codes)
        before = sorted(staff.roles.values_list("code", flat=True))
        after = sorted(r.code for r in roles)
        if before != after:
            if by.staff_id == staff.pk and "admin" in before and "admin" not in after:
                raise InvalidInput(_("You cannot remove your own administrator role"))
            _ensure_may_grant_roles(by, [r for r in roles if r.code not in before])
            staff.roles.set(roles)
            changes["roles"] = [before, after]
    if not changes:
        return staff
    for field, value in values.items():
        setattr(staff, field, value)
    if values:
        staff.save(update_fields=list(values))
    record_event(
        staff.tenant,
        "staff.updated",
        staff=staff,
        payload={"fields": sorted(changes)},
        source=by.channel,
    )
    record_audit(by, "staff.updated", staff, changes=changes)
    return staff


@transaction.atomic
def mark_staff_departed(staff: Staff, *, by: Actor) -> Staff:
    """A member left the company: keep their history, stop their console login.

    Their customers are handed over by the CRM's hand-over flow, which reacts to the
    ``staff.departed`` event.
    """
    if staff.status == Staff.Status.DEPARTED:
        return staff
    if by.staff_id == staff.pk:
        raise InvalidInput(_("You cannot mark yourself as departed"))
    staff.status = Staff.Status.DEPARTED
    staff.departed_at = timezone.now()
    staff.save(update_fields=["status", "departed_at"])
    if staff.user_id:
        get_user_model().objects.filter(pk=staff.user_id).update(is_active=False)
    record_event(
        staff.tenant,
        "staff.departed",
        staff=staff,
        key=f"staff.departed:{staff.pk}",
        source=by.channel,
    )
    record_audit(by, "staff.departed", staff, changes={"status": ["active", "departed"]})
    return staff


# --- console users ----------------------------------------------------------------------
@transaction.atomic
def create_console_user(
    staff: Staff, *, username: str, password: str, by: Actor, is_superuser: bool = False
) -> Any:
    """Give a staff member a console login (``is_superuser``: may also manage all tenants)."""
    username = username.strip()
    User = get_user_model()
    if not username:
        raise InvalidInput(_("Username is required"), details={"username": ""})
    if staff.user_id:
        raise Conflict(_("%(staff)s already has a console login") % {"staff": staff})
    if User.objects.filter(username=username).exists():
        raise Conflict(
            _("Username '%(username)s' is taken") % {"username": username},
            details={"username": username},
        )
    user = User(username=username, is_staff=True, is_superuser=is_superuser)
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise InvalidInput(
            " ".join(error.messages), details={"password": error.messages}
        ) from error
    user.set_password(password)
    user.save()
    staff.user = user
    staff.save(update_fields=["user"])
    record_audit(by, "user.created", staff, changes={"username": [None, username]})
    return user


# --- API keys ---------------------------------------------------------------------------
def hash_api_key(raw_key: str) -> str:
    """SHA-256 suffices: keys carry 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def create_api_key(
    tenant: Tenant,
    *,
    name: str,
    scopes: Sequence[str],
    by: Actor,
    staff: Staff | None = None,
    expires_in_days: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored or shown again."""
    name = name.strip()
    if not name:
        raise InvalidInput(_("API key name is required"), details={"name": ""})
    scopes = list(dict.fromkeys(scopes))
    unknown = sorted(set(scopes) - set(API_SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            _("Unknown or missing scopes: %(unknown)s; known scopes: %(known)s")
            % {"unknown": ", ".join(unknown) or _("(none given)"), "known": ", ".join(API_SCOPES)},
            details={"scopes": unknown},
        )
    if staff is not None and staff.tenant_id != tenant.pk:
        raise NotFound(_("Staff not found"))
    if expires_in_days is not None and expires_in_days <= 0:
        raise InvalidInput(_("expires_in_days must be positive"))
    prefix = secrets.token_hex(4)
    raw_key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.for_tenant(tenant).create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        key_hash=hash_api_key(raw_key),
        scopes=scopes,
        staff=staff,
        created_by=by.user if getattr(by.user, "pk", None) else None,
        expires_at=timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    record_audit(by, "apikey.created", key, changes={"scopes": [None, scopes]})
    return key, raw_key


@transaction.atomic
def revoke_api_key(key: ApiKey, *, by: Actor) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        record_audit(by, "apikey.revoked", key)
    return key


LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate_api_key(raw_key: str) -> ApiKey | None:
    """The live key matching ``raw_key``, or None (unknown, revoked, expired, inactive)."""
    if not raw_key.startswith(API_KEY_PREFIX):
        return None
    key = (
        ApiKey._base_manager.select_related("tenant", "staff")
        .filter(key_hash=hash_api_key(raw_key))
        .first()
    )
    now = timezone.now()
    if (
        key is None
        or key.revoked_at is not None
        or (key.expires_at is not None and key.expires_at <= now)
        or not key.tenant.is_active
        or (key.staff is not None and key.staff.status != Staff.Status.ACTIVE)
    ):
        return None
    # Bookkeeping, not a business change: throttled so a busy key is not a hot row.
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey._base_manager.filter(pk=key.pk).update(last_used_at=now)
    return key


def actor_for_api_key(key: ApiKey, *, ip_address: str | None = None) -> Actor:
    if key.staff is not None:
        base = actor_for_staff(key.staff, channel="api", ip_address=ip_address)
    else:
        base = system_actor(key.tenant, channel="api")
    return Actor(
        tenant=key.tenant,
        staff=base.staff,
        data_scope=base.data_scope,
        department_ids=base.department_ids,
        permission_patterns=base.permission_patterns,
        is_superuser=False,
        user=None,
        api_key=key,
        api_scopes=frozenset(key.scopes),
        channel="api",
        ip_address=ip_address,
    )


# --- WeCom directory (sync and change_contact callbacks) -------------------------------
WECOM_DEPARTED_STATUSES = frozenset({5})  # user/list status 5: 退出企业 (left the corp)


@transaction.atomic
def upsert_department_from_wecom(
    tenant: Tenant, *, wecom_id: int, name: str, parent_wecom_id: int | None, by: Actor
) -> tuple[Department, bool]:
    """Create or update the department WeCom knows as ``wecom_id`` (parents first)."""
    departments = Department.objects.for_tenant(tenant)
    parent = (
        departments.filter(wecom_id=parent_wecom_id).first()
        if parent_wecom_id and parent_wecom_id != wecom_id
        else None
    )
    department = departments.filter(wecom_id=wecom_id).first()
    name = (name or str(wecom_id)).strip()[:100]
    if department is None:
        department = departments.create(tenant=tenant, wecom_id=wecom_id, name=name, parent=parent)
        record_audit(by, "department.synced", department, changes={"name": [None, name]})
        return department, True
    changes = diff(department, {"name": name, "parent": parent})
    if changes:
        department.name, department.parent = name, parent
        department.save(update_fields=["name", "parent"])
        record_audit(by, "department.synced", department, changes=changes)
    return department, False


@transaction.atomic
def upsert_staff_from_wecom(
    tenant: Tenant,
    *,
    userid: str,
    name: str,
    department_wecom_ids: Sequence[int] = (),
    main_department: int | None = None,
    status: int = 1,
    direct_leader: Sequence[str] | None = None,
    by: Actor,
) -> tuple[Staff, bool]:
    """Mirror a WeCom member: new members join as sales; members who left are departed.

    ``direct_leader`` is WeCom's list of the member's direct leaders' userids (at most one
    today); None leaves the stored leader alone (callbacks since 2022-08 omit it). A leader
    not mirrored yet is resolved by ``set_direct_leaders`` once the directory is in.
    """
    staff = Staff.objects.for_tenant(tenant).filter(wecom_userid=userid).first()
    wecom_dept = main_department or (department_wecom_ids[0] if department_wecom_ids else None)
    department = (
        Department.objects.for_tenant(tenant).filter(wecom_id=wecom_dept).first()
        if wecom_dept
        else None
    )
    created = staff is None
    if created:
        if status in WECOM_DEPARTED_STATUSES:
            raise InvalidInput(_("A member who left the corp cannot be added as staff"))
        staff = add_staff(
            tenant,
            wecom_userid=userid,
            name=name or userid,
            department=department,
            role_codes=("sales",),
            by=by,
        )
    else:
        if staff.status == Staff.Status.DEPARTED and status not in WECOM_DEPARTED_STATUSES:
            Staff.objects.for_tenant(tenant).filter(pk=staff.pk).update(
                status=Staff.Status.ACTIVE, departed_at=None
            )
            staff.refresh_from_db()
            record_event(tenant, "staff.rejoined", staff=staff, source=by.channel)
        update_staff(staff, name=name or staff.name, department=department, by=by)
    if direct_leader is not None:
        set_direct_leaders(tenant, {userid: _first_userid(direct_leader)}, by=by)
        staff.refresh_from_db(fields=["direct_leader"])
    if status in WECOM_DEPARTED_STATUSES:
        mark_staff_departed(staff, by=by)
    return staff, created


def _first_userid(userids: Sequence[str] | str | None) -> str | None:
    """WeCom sends ``direct_leader`` as a list (a callback as "a,b"); the first one leads."""
    if isinstance(userids, str):
        userids = userids.split(",")
    return next((str(u).strip() for u in userids or () if str(u).strip()), None)


@transaction.atomic
def set_direct_leaders(
    tenant: Tenant, leaders: dict[str, str | Sequence[str] | None], *, by: Actor
) -> int:
    """Set each member's direct leader (``{userid: leader userid or None}``); return how many
    changed.

    Why a separate step: WeCom lists members in any order, so a leader may be mirrored after
    the members who report to them; the directory sync calls this once all are in. Unknown
    members are skipped; an unknown leader (outside the app's visible range) or a member
    named as their own leader leaves no leader. Churn alerts notify the leader.
    """
    wanted = {userid: _first_userid(leader) for userid, leader in leaders.items() if userid}
    known = staff_by_userid(tenant, [*wanted, *(v for v in wanted.values() if v)])
    changed = 0
    for userid, leader_userid in wanted.items():
        staff = known.get(userid)
        if staff is None:
            continue
        leader = known.get(leader_userid) if leader_userid and leader_userid != userid else None
        if staff.direct_leader_id == (leader.pk if leader else None):
            continue
        before = staff.direct_leader.wecom_userid if staff.direct_leader_id else None
        staff.direct_leader = leader
        staff.save(update_fields=["direct_leader"])
        after = leader.wecom_userid if leader else None
        record_event(
            tenant,
            "staff.updated",
            staff=staff,
            payload={"fields": ["direct_leader"]},
            source=by.channel,
        )
        record_audit(by, "staff.updated", staff, changes={"direct_leader": [before, after]})
        changed += 1
    return changed


def depart_staff_missing_from_wecom(tenant: Tenant, present_userids: set[str], *, by: Actor) -> int:
    """After a full directory sync: members WeCom no longer lists have left the corp."""
    missing = (
        Staff.objects.for_tenant(tenant)
        .filter(status=Staff.Status.ACTIVE)
        .exclude(wecom_userid__in=present_userids)
    )
    count = 0
    for staff in missing:
        if by.staff_id != staff.pk:
            mark_staff_departed(staff, by=by)
            count += 1
    return count
