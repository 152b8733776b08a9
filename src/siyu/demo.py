"""The demo brand that ``siyu demo`` creates on first start and reuses afterwards.

The brand is connected to the local WeCom emulator exactly as a real brand is connected to
WeCom: a corp id, a customer-contact secret, a self-built app and callback settings. Its org
chart lives in the emulator's directory and reaches Siyu through a sync; the simulator then
brings customers, groups and their changes in through encrypted callbacks, and its shop
(seed 004's product matrix, in the demo's catalogue) posts orders to the signed order webhook
with the tenant's webhook secret.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from siyu.commerce import services as commerce
from siyu.tenancy import services
from siyu.tenancy.models import Staff, Tenant

DEMO_SLUG = "demo"
DEMO_ADMIN_USERNAME = "admin"
DEMO_CORP_ID = "wwsiyudemo0000001"
DEMO_AGENT_ID = "1000002"

# (WeCom department id, name, parent id)
DEMO_DEPARTMENTS = [(1, "总部", 0), (2, "华东大区", 1), (3, "上海门店", 2), (4, "华南大区", 1)]
# (userid, name, WeCom department id, Siyu roles)
DEMO_STAFF = [
    ("zhangwei", "张伟", 1, ["admin"]),
    ("liting", "李婷", 1, ["operator"]),
    ("wangfang", "王芳", 3, ["sales"]),
    ("chenjie", "陈杰", 3, ["sales"]),
    ("zhaolei", "赵磊", 4, ["sales"]),
    ("sunli", "孙丽", 2, ["service"]),
    ("zhoumin", "周敏", 1, ["content"]),
    ("wuhao", "吴昊", 1, ["analyst"]),
]
DEMO_ADMIN_USERID = DEMO_STAFF[0][0]


@dataclass(frozen=True)
class DemoCredentials:
    username: str
    password: str
    api_key_note: str
    shop_webhook_secret: str = ""  # what the simulated shop signs its orders with


def _password_file() -> Path:
    return Path(settings.DATA_DIR) / "demo_admin_password"


def _random_aes_key() -> str:
    """43 characters of base64, as WeCom's 随机获取 produces."""
    return base64.b64encode(secrets.token_bytes(32)).decode()[:43]


@transaction.atomic
def ensure_demo_data() -> DemoCredentials:
    """Create the demo brand and its admin once; return the admin's login."""
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        tenant = services.create_tenant(
            slug=DEMO_SLUG,
            name="演示品牌 Demo Brand",
            wecom_corp_id=DEMO_CORP_ID,
            wecom_contact_secret=secrets.token_urlsafe(24),
            wecom_callback_token=secrets.token_hex(16),
            wecom_callback_aes_key=_random_aes_key(),
            wecom_agent_id=DEMO_AGENT_ID,
            wecom_agent_secret=secrets.token_urlsafe(24),
        )
    actor = services.system_actor(tenant, channel="cli")
    admin = Staff.objects.for_tenant(tenant).filter(wecom_userid=DEMO_ADMIN_USERID).first()
    if admin is None:
        admin = services.add_staff(
            tenant, wecom_userid=DEMO_ADMIN_USERID, name="张伟", role_codes=["admin"], by=actor
        )
    password = _ensure_admin_login(admin, actor)
    return DemoCredentials(
        username=DEMO_ADMIN_USERNAME,
        password=password,
        api_key_note="create one with: siyu apikey add --tenant demo",
        shop_webhook_secret=ensure_demo_shop(tenant),
    )


def ensure_demo_shop(tenant: Tenant) -> str:
    """The demo shop's catalogue (the simulated shop's products) and its webhook secret: the
    one set before, else a new one."""
    from siyu.simulator.shop import PRODUCTS

    for product in PRODUCTS:
        commerce.upsert_product(
            tenant,
            sku=product.sku,
            name=product.name,
            price_fen=product.price_fen,
            price_tier=product.price_tier,
            category=product.category,
        )
    return commerce.webhook_secret(tenant) or commerce.rotate_webhook_secret(tenant)


def simulator_shop_options(
    credentials: DemoCredentials, server_url: str
) -> tuple[list[str], dict[str, str]]:
    """What ``siyu simulate`` needs for the demo shop to post its orders to this server: its
    options, and the environment that carries the secret (kept off the command line, which
    other users of the machine can read)."""
    options = ["--shop-url", server_url, "--shop-tenant", DEMO_SLUG]
    return options, {"SIYU_SHOP_SECRET": credentials.shop_webhook_secret}


def emulator_corp(tenant: Tenant, callback_url: str) -> dict[str, Any]:
    """The emulator's side of the demo corp: same secrets, the org chart, our callback URL."""
    return {
        "corp_id": tenant.wecom_corp_id,
        "name": tenant.name,
        "contact_secret": tenant.wecom_contact_secret,
        "agent_secret": tenant.wecom_agent_secret,
        "agent_id": int(tenant.wecom_agent_id),
        "token": tenant.wecom_callback_token,
        "encoding_aes_key": tenant.wecom_callback_aes_key,
        "callback_url": callback_url,
        "departments": [
            {"id": wecom_id, "name": name, "parentid": parent}
            for wecom_id, name, parent in DEMO_DEPARTMENTS
        ],
        "staff": [
            {"userid": userid, "name": name, "department": [department]}
            for userid, name, department, _roles in DEMO_STAFF
        ],
    }


def assign_demo_roles(tenant: Tenant) -> None:
    """After the first directory sync: give the demo staff their roles (new staff are sales)."""
    actor = services.system_actor(tenant, channel="cli")
    by_userid = services.staff_by_userid(tenant, [row[0] for row in DEMO_STAFF])
    for userid, _name, _department, roles in DEMO_STAFF:
        staff = by_userid.get(userid)
        if staff is not None and userid != DEMO_ADMIN_USERID:
            services.update_staff(staff, role_codes=roles, by=actor)


def _ensure_admin_login(admin: Staff, actor) -> str:
    password_file = _password_file()
    user = get_user_model().objects.filter(username=DEMO_ADMIN_USERNAME).first()
    if user is not None and password_file.exists():
        return password_file.read_text().strip()
    password = secrets.token_urlsafe(9)
    if user is None:
        services.create_console_user(
            admin, username=DEMO_ADMIN_USERNAME, password=password, is_superuser=True, by=actor
        )
    else:  # the password file was deleted: issue a new password rather than lock them out
        user.set_password(password)
        user.save(update_fields=["password"])
    password_file.write_text(password)
    password_file.chmod(0o600)
    return password
