"""The demo brand that ``siyu demo`` creates on first start and reuses afterwards.

Later capabilities (the WeCom emulator and the simulator) fill it with a living private
domain; this module creates the brand, its org chart and the admin login.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from siyu.tenancy import services
from siyu.tenancy.models import Department, Staff, Tenant

DEMO_SLUG = "demo"
DEMO_ADMIN_USERNAME = "admin"

DEMO_DEPARTMENTS = [
    ("总部", None),
    ("华东大区", "总部"),
    ("上海门店", "华东大区"),
    ("华南大区", "总部"),
]
DEMO_STAFF = [
    ("zhangwei", "张伟", "总部", ["admin"]),
    ("liting", "李婷", "总部", ["operator"]),
    ("wangfang", "王芳", "上海门店", ["sales"]),
    ("chenjie", "陈杰", "上海门店", ["sales"]),
    ("zhaolei", "赵磊", "华南大区", ["sales"]),
    ("sunli", "孙丽", "华东大区", ["service"]),
    ("zhoumin", "周敏", "总部", ["content"]),
    ("wuhao", "吴昊", "总部", ["analyst"]),
]


@dataclass(frozen=True)
class DemoCredentials:
    username: str
    password: str
    api_key_note: str


def _password_file() -> Path:
    return Path(settings.DATA_DIR) / "demo_admin_password"


@transaction.atomic
def ensure_demo_data() -> DemoCredentials:
    """Create the demo brand once; return the admin's login (kept in var/ for later runs)."""
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        tenant = services.create_tenant(slug=DEMO_SLUG, name="演示品牌 Demo Brand")
    actor = services.system_actor(tenant, channel="cli")
    departments: dict[str, Department] = {d.name: d for d in Department.objects.for_tenant(tenant)}
    for name, parent in DEMO_DEPARTMENTS:
        if name not in departments:
            departments[name] = services.create_department(
                tenant, name=name, parent=departments.get(parent), by=actor
            )
    existing = set(Staff.objects.for_tenant(tenant).values_list("wecom_userid", flat=True))
    for userid, name, department, roles in DEMO_STAFF:
        if userid not in existing:
            services.add_staff(
                tenant,
                wecom_userid=userid,
                name=name,
                department=departments[department],
                role_codes=roles,
                by=actor,
            )
    password = _ensure_admin_login(tenant, actor)
    return DemoCredentials(
        username=DEMO_ADMIN_USERNAME,
        password=password,
        api_key_note="create one with: siyu apikey add --tenant demo",
    )


def _ensure_admin_login(tenant: Tenant, actor) -> str:
    password_file = _password_file()
    user = get_user_model().objects.filter(username=DEMO_ADMIN_USERNAME).first()
    if user is not None and password_file.exists():
        return password_file.read_text().strip()
    password = secrets.token_urlsafe(9)
    if user is None:
        admin = Staff.objects.for_tenant(tenant).get(wecom_userid=DEMO_STAFF[0][0])
        services.create_console_user(
            admin, username=DEMO_ADMIN_USERNAME, password=password, is_superuser=True, by=actor
        )
    else:  # the password file was deleted: issue a new password rather than lock them out
        user.set_password(password)
        user.save(update_fields=["password"])
    password_file.write_text(password)
    password_file.chmod(0o600)
    return password
