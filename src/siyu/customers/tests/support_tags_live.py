"""A WeCom corp in the emulator whose encrypted callbacks reach a live Siyu server, for the
tag tests that go through the whole pipe (emulator → callback endpoint → processors)."""

from __future__ import annotations

import pytest

from siyu.customers.tests.support_tags import AES_KEY, CORP, SECRET, STAFF, TOKEN
from siyu.testing.factories import TenantFactory
from siyu.wecom.emulator.server import EmulatorControl, EmulatorServer


@pytest.fixture
def live_emulator():
    with EmulatorServer(callback_retry_delay=0.2) as server:
        yield server


@pytest.fixture
def live_world(live_emulator, live_server, settings):
    """``(tenant, control)``: the emulator's corp, its callbacks delivered to this test's
    live server (needs ``django_db(transaction=True)``)."""
    settings.WECOM_API_BASE = f"{live_emulator.base_url}/cgi-bin"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tl"}
    }
    tenant = TenantFactory(
        slug="tags-live",
        wecom_corp_id=CORP,
        wecom_contact_secret=SECRET,
        wecom_callback_token=TOKEN,
        wecom_callback_aes_key=AES_KEY,
    )
    control = EmulatorControl(live_emulator.base_url, corp_id=CORP)
    control.setup_corp(
        CORP,
        contact_secret=SECRET,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        callback_url=f"{live_server.url}/wecom/tags-live/callback",
        staff=STAFF,
    )
    assert control.verify_callback()["ok"] is True
    yield tenant, control
    control.close()


def settle(control: EmulatorControl) -> None:
    """Wait until every callback sent so far was delivered and processed."""
    assert control.wait_callbacks(timeout=20)
