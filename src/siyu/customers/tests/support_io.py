"""Fixtures and helpers of the import / export tests (imported by those test modules)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import pytest

from siyu.core.jobs import execute_job
from siyu.core.models import BackgroundJob
from siyu.customers import profiles, tagging
from siyu.customers.models import Customer, CustomerTag, CustomField, Tag
from siyu.tenancy import services
from siyu.testing.factories import CustomerFactory, StaffFactory

__all__ = [
    "IoWorld",
    "csv_bytes",
    "customer_state",
    "io_world",
    "read_csv",
    "run",
    "staff_with",
]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    """Job files go to a temporary folder, not the developer's var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"


def run(job: BackgroundJob) -> BackgroundJob:
    """Run a queued job now, in this process (what the worker does)."""
    finished = execute_job(job.tenant_id, job.pk)
    assert finished is not None, "the job was not queued"
    return finished


def csv_bytes(rows: list[list[Any]], *, encoding: str = "utf-8", delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue().encode(encoding)


def read_csv(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM"
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def staff_with(tenant, permissions: list[str], *, scope: str = "own", userid: str, login=True):
    """A staff member whose only role grants exactly ``permissions`` with ``scope``."""
    actor = services.system_actor(tenant)
    code = f"role-{userid}"
    services.create_role(
        tenant, code=code, name=code, permissions=permissions, data_scope=scope, by=actor
    )
    return StaffFactory(tenant=tenant, roles=[code], login=login, wecom_userid=userid)


def customer_state(tenant) -> list[tuple]:
    """Everything an import may change, to compare before and after."""
    customers = Customer.objects.for_tenant(tenant).order_by("pk")
    rows = [
        (
            c.pk,
            c.external_userid,
            c.name,
            c.phone,
            c.birthday,
            c.age_band,
            c.province,
            c.city,
            c.interests,
            c.custom,
            c.gender,
        )
        for c in customers
    ]
    links = sorted(CustomerTag.objects.for_tenant(tenant).values_list("customer_id", "tag_id"))
    return [*rows, ("tags", links)]


@dataclass
class IoWorld:
    """A tenant with staff, customers, tags and custom fields to import into and export."""

    tenant: Any
    admin: Any
    sales: Any
    other_sales: Any
    alice: Customer  # owned by sales, phone 13800000001, unionid "union-alice"
    bob: Customer  # owned by sales
    carol: Customer  # owned by other_sales
    coffee: Tag
    tea: Tag
    vip_gold: Tag  # "金卡" in the group 会员等级
    level: CustomField  # choice: 青铜 / 白银 / 黄金
    points: CustomField  # number
    joined: CustomField  # date
    skin: CustomField  # multi-choice: 干性 / 油性 / 敏感
    note: CustomField  # text

    def refresh(self, customer: Customer) -> Customer:
        return Customer.objects.for_tenant(self.tenant).get(pk=customer.pk)

    def tags_of(self, customer: Customer) -> set[str]:
        return set(
            CustomerTag.objects.for_tenant(self.tenant)
            .filter(customer=customer)
            .values_list("tag__name", flat=True)
        )


@pytest.fixture
def io_world(tenant, admin_staff, sales_staff) -> IoWorld:
    system = services.system_actor(tenant)
    other_sales = StaffFactory(tenant=tenant, roles=["sales"], login=True, wecom_userid="sales2")
    alice = CustomerFactory(
        tenant=tenant,
        external_userid="wm-alice",
        name="Alice",
        unionid="union-alice",
        staff=sales_staff,
        state="poster",
    )
    bob = CustomerFactory(tenant=tenant, external_userid="wm-bob", name="Bob", staff=sales_staff)
    carol = CustomerFactory(
        tenant=tenant, external_userid="wm-carol", name="Carol", staff=other_sales
    )
    profiles.update_profile(system, alice, phone="13800000001", city="上海")
    drinks = tagging.create_tag_group(system, name="饮品", tags=["咖啡", "茶"], local=True)
    members = tagging.create_tag_group(system, name="会员等级", tags=["金卡"], local=True)
    tagging.create_tag_group(system, name="活动", tags=["金卡"], local=True)  # same name
    tags = {tag.name: tag for tag in Tag.objects.for_tenant(tenant).filter(group=drinks)}
    fields = {
        "level": profiles.create_custom_field(
            system, key="level", label="会员级别", type="choice", choices=["青铜", "白银", "黄金"]
        ),
        "points": profiles.create_custom_field(system, key="points", label="积分", type="number"),
        "joined": profiles.create_custom_field(system, key="joined", label="入会日期", type="date"),
        "skin": profiles.create_custom_field(
            system, key="skin", label="肤质", type="multi_choice", choices=["干性", "油性", "敏感"]
        ),
        "note": profiles.create_custom_field(system, key="note", label="备注信息", type="text"),
    }
    return IoWorld(
        tenant=tenant,
        admin=admin_staff,
        sales=sales_staff,
        other_sales=other_sales,
        alice=Customer.objects.for_tenant(tenant).get(pk=alice.pk),
        bob=bob,
        carol=carol,
        coffee=tags["咖啡"],
        tea=tags["茶"],
        vip_gold=Tag.objects.for_tenant(tenant).get(group=members),
        **fields,
    )
