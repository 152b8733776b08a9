"""Fixtures and helpers for console tests (imported by the test folders' conftest.py files)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from siyu.core.events import record_event
from siyu.tenancy import services
from siyu.testing.factories import DepartmentFactory, StaffFactory

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
COMPILE_SCRIPT = REPOSITORY_ROOT / "scripts" / "compile_messages.py"

OTHER_SECRET = "other-tenant-contact-secret-0123456789"


def ensure_messages_compiled() -> None:
    """Compile stale .po catalogues before any test translates a string.

    The .mo files are set-up artefacts (gitignored); compiling here keeps a fresh checkout's
    tests from checking Chinese pages against missing catalogues.
    """
    if not COMPILE_SCRIPT.exists():  # an installed package ships its .mo files
        return
    spec = importlib.util.spec_from_file_location("siyu_compile_messages", COMPILE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.compile_catalogues(stale_only=True)


def change_url(obj: Any) -> str:
    opts = obj._meta
    return f"/console/{opts.app_label}/{opts.model_name}/{obj.pk}/change/"


def changelist_url(model: Any) -> str:
    opts = model._meta
    return f"/console/{opts.app_label}/{opts.model_name}/"


@pytest.fixture
def operator_staff(tenant):
    """Tenant-wide read access (``*.view_*``) but no right to change tenancy data."""
    return StaffFactory(tenant=tenant, roles=["operator"], login=True, wecom_userid="ops1")


@pytest.fixture
def platform_superuser(tenant):
    """A platform operator: a staff of tenant A whose login may manage every tenant."""
    actor = services.system_actor(tenant)
    staff = services.add_staff(
        tenant, wecom_userid="root", name="Root", by=actor, role_codes=["admin"]
    )
    services.create_console_user(
        staff, username="platform-root", password="Siyu-test-pass-42", by=actor, is_superuser=True
    )
    return staff


@pytest.fixture
def other_admin(other_tenant):
    return StaffFactory(tenant=other_tenant, roles=["admin"], login=True, wecom_userid="boss")


@pytest.fixture
def other_rows(other_tenant, other_admin) -> dict[str, Any]:
    """One row of every console model in tenant B, with names that cannot appear in A."""
    actor = services.actor_for_staff(other_admin, user=other_admin.user)
    department = DepartmentFactory(tenant=other_tenant, name="Zeta-Department")
    staff = services.add_staff(
        other_tenant, wecom_userid="zeta", name="Zeta-Staff", department=department, by=actor
    )
    role = services.create_role(
        other_tenant, code="zeta-role", name="Zeta-Role", permissions=["core.view_event"], by=actor
    )
    key, _raw = services.create_api_key(
        other_tenant, name="Zeta-Key", scopes=["staff:read"], staff=staff, by=actor
    )
    event, _created = record_event(other_tenant, "zeta.happened", staff=staff)
    services.update_tenant(other_tenant, by=actor, wecom_contact_secret=OTHER_SECRET)
    from siyu.core.models import AuditEntry

    audit = AuditEntry.objects.for_tenant(other_tenant).first()
    return {
        "department": department,
        "staff": staff,
        "role": role,
        "apikey": key,
        "event": event,
        "auditentry": audit,
        "tenant": other_tenant,
    }
