"""Fixtures and helpers of the tag tests: a WeCom corp in the local emulator, a tenant wired
to it, and looks into the emulator's state (what WeCom holds).

Import the fixtures into a test module by name (``from ...support_tags import brand, ...``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from siyu.customers.models import Customer, CustomerTag, Follow, FollowTag, Tag
from siyu.testing.factories import TenantFactory
from siyu.wecom.emulator import EmulatorControl, EmulatorServer, World

CORP = "wwtagscorp000001"
SECRET = "tags-contact-secret"
TOKEN = "TagsToken42"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
STAFF = [
    {"userid": "lili", "name": "李莉"},
    {"userid": "wang", "name": "王强"},
    {"userid": "zhao", "name": "赵六"},
]


@pytest.fixture
def wecom_cache(settings):
    """Tokens and rate-limit counters in a private, empty cache."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tags"}
    }
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def emulator(settings, wecom_cache):
    """The emulator without callback delivery (tests that need callbacks use live_server)."""
    with EmulatorServer(World(seed="tags"), callback_delivery=False) as server:
        settings.WECOM_API_BASE = f"{server.base_url}/cgi-bin"
        yield server


@pytest.fixture
def control(emulator):
    control = EmulatorControl(emulator.base_url, corp_id=CORP)
    control.setup_corp(
        CORP, contact_secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY, staff=STAFF
    )
    yield control
    control.close()


@pytest.fixture
def brand(db, control):
    """The tenant of the emulator's corp."""
    return TenantFactory(
        slug="tags-brand", name="Tags Brand", wecom_corp_id=CORP, wecom_contact_secret=SECRET
    )


# --- what WeCom holds -------------------------------------------------------------------------
def wecom_library(emulator: EmulatorServer) -> dict[str, dict[str, int]]:
    """``{group name: {tag name: order}}`` as the emulator holds it."""
    with emulator.world.lock:
        corp = emulator.world.corps[CORP]
        return {
            group.group_name: {tag.name: tag.order for tag in group.tags.values()}
            for group in corp.tag_groups.values()
        }


def wecom_marks(emulator: EmulatorServer, external_userid: str) -> dict[str, set[str]]:
    """``{userid: {tag ids}}``: the corp tags each staff has marked on the customer."""
    with emulator.world.lock:
        customer = emulator.world.corps[CORP].customers[external_userid]
        return {userid: set(follow.tags) for userid, follow in customer.follows.items()}


# --- what Siyu holds --------------------------------------------------------------------------
def carried(tenant: Any, customer: Customer) -> set[str]:
    """Names of the tags the customer carries (CustomerTag)."""
    return set(
        CustomerTag.objects.for_tenant(tenant)
        .filter(customer=customer)
        .values_list("tag__name", flat=True)
    )


def marked(tenant: Any, customer: Customer) -> dict[str, set[str]]:
    """``{userid: {tag names}}`` of the customer's active friendships (FollowTag)."""
    marks: dict[str, set[str]] = {
        userid: set()
        for userid in Follow.objects.for_tenant(tenant)
        .filter(customer=customer, status=Follow.Status.ACTIVE)
        .values_list("staff__wecom_userid", flat=True)
    }
    for userid, name in (
        FollowTag.objects.for_tenant(tenant)
        .filter(follow__customer=customer, follow__status=Follow.Status.ACTIVE)
        .values_list("follow__staff__wecom_userid", "tag__name")
    ):
        marks[userid].add(name)
    return marks


def implied_links(tenant: Any) -> set[tuple[int, int]]:
    """(customer, tag) pairs the active friendships' marks imply."""
    return set(
        FollowTag.objects.for_tenant(tenant)
        .filter(follow__status=Follow.Status.ACTIVE, tag__deleted=False)
        .values_list("follow__customer_id", "tag_id")
    )


def links(tenant: Any) -> set[tuple[int, int]]:
    return set(CustomerTag.objects.for_tenant(tenant).values_list("customer_id", "tag_id"))


def tag_named(tenant: Any, name: str) -> Tag:
    return Tag.objects.for_tenant(tenant).get(name=name, deleted=False)


def customer(tenant: Any, external_userid: str) -> Customer:
    return Customer.objects.for_tenant(tenant).get(external_userid=external_userid)
