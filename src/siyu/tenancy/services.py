"""The only writers of tenants, departments, roles, staff, console users and API keys.

Each function validates, writes, records its event and its audit entry in one transaction.
Console views, API handlers and CLI commands all call these.
"""

from __future__ import annotations

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

from siyu.core.audit import diff, record_audit
from siyu.core.errors import Conflict, InvalidInput, NotFound
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
SECRET_FIELDS = frozenset({"wecom_contact_secret", "wecom_callback_token", "wecom_callback_aes_key"})


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
    scope = max((DataScope(r.data_scope) for r in roles), key=lambda s: s.width, default=DataScope.OWN)
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


# --- tenants ----------------------------------------------------------------------------
def _validate_wecom_settings(values: dict[str, str]) -> None:
    corp_id = values.get("wecom_corp_id")
    if corp_id and not CORP_ID_PATTERN.match(corp_id):
        raise InvalidInput("WeCom corp id may hold only letters, digits, '-' and '_'")
    aes_key = values.get("wecom_callback_aes_key")
    if aes_key and (len(aes_key) != AES_KEY_LENGTH or not re.fullmatch(r"[A-Za-z0-9+/]+", aes_key)):
        raise InvalidInput("The callback EncodingAESKey must be 43 base64 characters")
    token = values.get("wecom_callback_token")
    if token and not re.fullmatch(r"[A-Za-z0-9]{1,32}", token):
        raise InvalidInput("The callback token must be 1 to 32 letters or digits")


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
) -> Tenant:
    """Create a brand with its built-in roles."""
    slug = slug.strip().lower()
    name = name.strip()
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            "Slug must be 3-50 lowercase letters, digits or '-', not starting or ending with '-'",
            details={"slug": slug},
        )
    if not name:
        raise InvalidInput("Tenant name is required")
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(f"A tenant with slug '{slug}' already exists", details={"slug": slug})
    secrets_given = {
        "wecom_corp_id": wecom_corp_id.strip(),
        "wecom_contact_secret": wecom_contact_secret.strip(),
        "wecom_callback_token": wecom_callback_token.strip(),
        "wecom_callback_aes_key": wecom_callback_aes_key.strip(),
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
    allowed = {"name", "is_active", "wecom_corp_id", *SECRET_FIELDS}
    unknown = set(values) - allowed
    if unknown:
        raise InvalidInput(f"Unknown tenant fields: {', '.join(sorted(unknown))}")
    values = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
    values = {k: v for k, v in values.items() if not (k in SECRET_FIELDS and not v)}
    if "name" in values and not values["name"]:
        raise InvalidInput("Tenant name is required")
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
        raise InvalidInput("Department name is required")
    if parent is not None and parent.tenant_id != tenant.pk:
        raise NotFound("Parent department not found")
    departments = Department.objects.for_tenant(tenant)
    if wecom_id is not None and departments.filter(wecom_id=wecom_id).exists():
        raise Conflict(f"Department with WeCom id {wecom_id} already exists")
    department = departments.create(tenant=tenant, name=name, parent=parent, wecom_id=wecom_id)
    record_audit(by, "department.created", department)
    return department


# --- staff ------------------------------------------------------------------------------
def _roles_by_code(tenant: Tenant, codes: Iterable[str]) -> list[Role]:
    codes = list(dict.fromkeys(codes))
    roles = list(Role.objects.for_tenant(tenant).filter(code__in=codes))
    missing = sorted(set(codes) - {role.code for role in roles})
    if missing:
        known = ", ".join(Role.objects.for_tenant(tenant).values_list("code", flat=True))
        raise InvalidInput(
            f"Unknown role(s): {', '.join(missing)}; known roles: {known}",
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
            "WeCom userid must be 1-64 letters, digits or _ . @ -",
            details={"wecom_userid": wecom_userid},
        )
    if not name:
        raise InvalidInput("Staff name is required")
    if department is not None and department.tenant_id != tenant.pk:
        raise NotFound("Department not found")
    staff_rows = Staff.objects.for_tenant(tenant)
    if staff_rows.filter(wecom_userid=wecom_userid).exists():
        raise Conflict(
            f"Staff with WeCom userid '{wecom_userid}' already exists",
            details={"wecom_userid": wecom_userid},
        )
    roles = _roles_by_code(tenant, role_codes)
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
    department: Department | None | type[Ellipsis] = ...,
    role_codes: Sequence[str] | None = None,
) -> Staff:
    """Rename a staff member, move them to a department or change their roles."""
    values: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise InvalidInput("Staff name is required")
        values["name"] = name.strip()
    if department is not ...:
        if department is not None and department.tenant_id != staff.tenant_id:
            raise NotFound("Department not found")
        values["department"] = department
    changes = diff(staff, values)
    if role_codes is not None:
        roles = _roles_by_code(staff.tenant, role_codes)
        before = sorted(staff.roles.values_list("code", flat=True))
        after = sorted(r.code for r in roles)
        if before != after:
            if by.staff_id == staff.pk and "admin" in before and "admin" not in after:
                raise InvalidInput("You cannot remove your own administrator role")
            staff.roles.set(roles)
            changes["roles"] = [before, after]
    if not changes:
        return staff
    for field, value in values.items():
        setattr(staff, field, value)
    if values:
        staff.save(update_fields=list(values))
    record_event(
        staff.tenant, "staff.updated", staff=staff, payload={"fields": sorted(changes)}, source=by.channel
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
        raise InvalidInput("You cannot mark yourself as departed")
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
        raise InvalidInput("Username is required")
    if staff.user_id:
        raise Conflict(f"{staff} already has a console login")
    if User.objects.filter(username=username).exists():
        raise Conflict(f"Username '{username}' is taken", details={"username": username})
    user = User(username=username, is_staff=True, is_superuser=is_superuser)
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise InvalidInput(" ".join(error.messages), details={"password": error.messages}) from error
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
        raise InvalidInput("API key name is required")
    scopes = list(dict.fromkeys(scopes))
    unknown = sorted(set(scopes) - set(API_SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            f"Unknown or missing scopes: {', '.join(unknown) or '(none given)'}; "
            f"known scopes: {', '.join(API_SCOPES)}",
            details={"scopes": unknown},
        )
    if staff is not None and staff.tenant_id != tenant.pk:
        raise NotFound("Staff not found")
    if expires_in_days is not None and expires_in_days <= 0:
        raise InvalidInput("expires_in_days must be positive")
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
