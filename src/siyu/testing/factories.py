"""factory_boy factories that build test data through the services, as production does."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from siyu.community.models import Group
from siyu.customers.models import Customer
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


class CustomerFactory(factory.django.DjangoModelFactory):
    """A customer, built through the customers services as the WeCom sync does.

    ``staff=`` (one) or ``followed_by=[...]`` (several, earliest first) add friendships, so
    the first of them owns the customer; ``added_at`` and ``state`` describe those adds.
    """

    class Meta:
        model = Customer

    tenant = factory.SubFactory(TenantFactory)
    external_userid = factory.Sequence(lambda n: f"wm{n:028d}")
    name = factory.Sequence(lambda n: f"Customer {n}")

    @classmethod
    def _create(
        cls,
        model_class,
        *args,
        tenant,
        staff=None,
        followed_by=(),
        added_at=None,
        state="",
        **kwargs,
    ):
        from siyu.customers import services as customer_services

        customer, _created = customer_services.upsert_customer(tenant, **kwargs)
        added_at = added_at or timezone.now()
        for offset, member in enumerate([*([staff] if staff else []), *followed_by]):
            customer_services.upsert_follow(
                tenant,
                customer=customer,
                staff=member,
                added_at=added_at + timedelta(seconds=offset),
                state=state,
            )
        return Customer.objects.for_tenant(tenant).get(pk=customer.pk)


def group_member(member) -> dict:
    """A WeCom ``member_list`` entry for a Staff or a Customer (or a dict, passed through)."""
    if isinstance(member, dict):
        return member
    if isinstance(member, Staff):
        return {"userid": member.wecom_userid, "type": 1}
    return {"userid": member.external_userid, "type": 2}


class GroupFactory(factory.django.DjangoModelFactory):
    """A customer group, built through ``upsert_group``; ``owner=`` a Staff joins as member.

    ``members=[staff, customer, {...}]`` are its other members (Staff, Customer or WeCom
    ``member_list`` dicts).
    """

    class Meta:
        model = Group

    tenant = factory.SubFactory(TenantFactory)
    chat_id = factory.Sequence(lambda n: f"wr{n:028d}")
    name = factory.Sequence(lambda n: f"Group {n}")

    @classmethod
    def _create(cls, model_class, *args, tenant, owner=None, members=(), **kwargs):
        from siyu.community import services as community_services

        entries = [group_member(owner)] if owner else []
        entries += [group_member(member) for member in members]
        group, _created = community_services.upsert_group(
            tenant,
            owner_userid=owner.wecom_userid if owner else "",
            members=entries,
            **kwargs,
        )
        return Group.objects.for_tenant(tenant).get(pk=group.pk)
