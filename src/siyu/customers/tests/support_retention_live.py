"""A live world for retention tests: the emulator posts real encrypted callbacks to this
test's Siyu server (``live_server``), and Siyu calls the emulator through the real client.

Import the fixtures into a test module: ``from ...support_retention_live import emulator,
world  # noqa: F401``.
"""

from __future__ import annotations

import pytest

from siyu.testing.factories import TenantFactory
from siyu.wecom.emulator.server import EmulatorControl, EmulatorServer

CORP_ID = "wwretention000001"
SECRET = "retention-contact-secret"
AGENT_ID, AGENT_SECRET = 1000002, "retention-app-secret"
TOKEN = "RetentionToken42"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
# Lili reports to Wang (WeCom's direct_leader), Zhao is a colleague.
STAFF = [
    {"userid": "wang", "name": "王强"},
    {"userid": "lili", "name": "李莉", "direct_leader": ["wang"]},
    {"userid": "zhao", "name": "赵六"},
]


@pytest.fixture
def emulator():
    with EmulatorServer(callback_retry_delay=0.2) as server:
        yield server


@pytest.fixture
def world(emulator, live_server, settings):
    """(tenant, control): a corp whose callbacks reach the live server, its directory
    mirrored by a full sync (so Siyu knows Lili's leader)."""
    from siyu.wecom.sync import sync_tenant

    settings.WECOM_API_BASE = f"{emulator.base_url}/cgi-bin"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rl"}
    }
    tenant = TenantFactory(
        slug="retention",
        wecom_corp_id=CORP_ID,
        wecom_contact_secret=SECRET,
        wecom_callback_token=TOKEN,
        wecom_callback_aes_key=AES_KEY,
        wecom_agent_id=str(AGENT_ID),
        wecom_agent_secret=AGENT_SECRET,
    )
    control = EmulatorControl(emulator.base_url, corp_id=CORP_ID)
    control.setup_corp(
        CORP_ID,
        contact_secret=SECRET,
        agent_id=AGENT_ID,
        agent_secret=AGENT_SECRET,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        callback_url=f"{live_server.url}/wecom/retention/callback",
        staff=STAFF,
    )
    assert control.verify_callback()["ok"] is True
    sync_tenant(tenant, full=True)
    yield tenant, control
    control.close()


def settle(control) -> None:
    """Wait until every callback the emulator sent was answered."""
    assert control.wait_callbacks(timeout=20)
