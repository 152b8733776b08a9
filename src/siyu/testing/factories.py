"""factory_boy factories that build test data through the services, as production does."""

from __future__ import annotations

import factory

from siyu.tenancy import services
from siyu.tenancy.models import Department, Staff, Tenant

TEST_PASSWORD = "Siyu-test-pass-42"


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"brand-{n:03d}")
    name = factory.Sequence(lambda n: f"Brand {n}")
    wecom_corp_id = factory.Sequence(lambda n: f"ww{n:016x}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return services.create_tenant(**kwargs)


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Department {n}")
    parent = None

    @classmethod
    def _create(cls, model_class, *args, tenant, **kwargs):
        return services.create_department(tenant, by=services.system_actor(tenant), **kwargs)


class StaffFactory(factory.django.DjangoModelFactory):
    """A staff member; ``roles=["admin"]`` picks roles, ``login=True`` adds a console user."""

    class Meta:
        model = Staff

    tenant = factory.SubFactory(TenantFactory)
    wecom_userid = factory.Sequence(lambda n: f"user{n:04d}")
    name = factory.Sequence(lambda n: f"Staff {n}")
    department = None

    @classmethod
    def _create(cls, model_class, *args, tenant, roles=("sales",), login=False, **kwargs):
        actor = services.system_actor(tenant)
        staff = services.add_staff(tenant, by=actor, role_codes=roles, **kwargs)
        if login:
            services.create_console_user(
                staff,
                username=f"{tenant.slug}-{staff.wecom_userid}",
                password=TEST_PASSWORD,
                by=actor,
            )
        return staff
