"""The console's tag pages (library with tags inline, auto-tag rules) and the customer list's
"tag or untag" action: writes through the services, WeCom refusals on the form, tenant
isolation and data scope."""

from __future__ import annotations

import json

import pytest

from siyu.core.models import BackgroundJob
from siyu.customers import autotag, tagging
from siyu.customers.models import AutoTagRule, Customer, Tag, TagGroup
from siyu.customers.tests import support_tags
from siyu.customers.tests.support_tags import carried, tag_named, wecom_library
from siyu.tenancy.services import system_actor
from siyu.testing.console import change_url, changelist_url
from siyu.testing.factories import CustomerFactory, StaffFactory

brand = support_tags.brand
control = support_tags.control
emulator = support_tags.emulator
wecom_cache = support_tags.wecom_cache

IN_SHANGHAI = {"op": "and", "conditions": [{"field": "city", "operator": "eq", "value": "上海"}]}


def add_url(model) -> str:
    return f"{changelist_url(model)}add/"


def inline_data(group: TagGroup, rows: list[dict], extra: list[dict] = ()) -> dict:
    """The tag inline's management form and rows (``id``, ``name``, ``order``, ``DELETE``)."""
    prefix = "tags"
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows) + len(extra)),
        f"{prefix}-INITIAL_FORMS": str(len(rows)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate([*rows, *extra]):
        for key, value in row.items():
            data[f"{prefix}-{index}-{key}"] = value
        data[f"{prefix}-{index}-group"] = str(group.pk)
    return data


@pytest.fixture
def admin_of_brand(brand):
    return StaffFactory(tenant=brand, roles=["admin"], login=True, wecom_userid="boss")


def test_a_group_added_in_the_console_is_created_in_wecom(brand, emulator, admin_of_brand, login):
    client = login(admin_of_brand)
    response = client.post(
        add_url(TagGroup),
        {"name": "购买价位", "order": "0", "first_tags": "9.9 体验课\n199 套餐\n"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert wecom_library(emulator) == {"购买价位": {"9.9 体验课": 0, "199 套餐": 0}}
    group = TagGroup.objects.for_tenant(brand).get()
    assert group.wecom_group_id.startswith("et")


def test_a_wecom_refusal_shows_on_the_form_and_writes_nothing(
    brand, emulator, control, admin_of_brand, login
):
    control.tag_change("create", group_name="等级", tags=["高"])  # in WeCom, not synced
    client = login(admin_of_brand)
    group = tagging.create_tag_group(system_actor(brand), name="来源", tags=["直播"])
    control.tag_change("create", group_id=group.wecom_group_id, tags=["门店"])
    # when the inline adds a tag WeCom already has in that group
    live = Tag.objects.for_tenant(brand).get(name="直播")
    data = {
        "name": "来源",
        "order": "0",
        **inline_data(
            group,
            [{"id": str(live.pk), "name": "直播", "order": "0"}],
            [{"name": "门店", "order": "0"}],
        ),
    }
    response = client.post(change_url(group), data, follow=True)
    # then the refusal is shown, naming the tag, and nothing is written
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("门店" in m and "企业微信" in m for m in messages), messages
    assert not Tag.objects.for_tenant(brand).filter(name="门店").exists()


def test_a_taken_group_name_is_an_error_on_the_name_field(brand, emulator, admin_of_brand, login):
    tagging.create_tag_group(system_actor(brand), name="等级", tags=["高"])
    response = login(admin_of_brand).post(
        add_url(TagGroup), {"name": "等级", "order": "0", "first_tags": "低"}
    )
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert TagGroup.objects.for_tenant(brand).count() == 1


def test_the_inline_adds_renames_and_deletes_tags(tenant, admin_staff, login):
    actor = system_actor(tenant)
    group = tagging.create_tag_group(actor, name="活动", tags=["双十一", "618"], local=True)
    promo, summer = tag_named(tenant, "双十一"), tag_named(tenant, "618")
    data = {
        "name": "大促",
        "order": "3",
        **inline_data(
            group,
            [
                {"id": str(promo.pk), "name": "双十一", "order": "0"},
                {"id": str(summer.pk), "name": "年中", "order": "0", "DELETE": "on"},
            ],
            [{"name": "年货节", "order": "0"}],
        ),
    }
    response = login(admin_staff).post(change_url(group), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    group.refresh_from_db()
    assert (group.name, group.order) == ("大促", 3)
    live = set(Tag.objects.for_tenant(tenant).filter(deleted=False).values_list("name", flat=True))
    assert live == {"双十一", "年货节"}


def test_deleting_a_group_in_the_console_is_soft_and_takes_it_off_customers(
    tenant, admin_staff, login
):
    actor = system_actor(tenant)
    group = tagging.create_tag_group(actor, name="活动", tags=["双十一"], local=True)
    someone = CustomerFactory(tenant=tenant, staff=admin_staff)
    tagging.tag_customer(actor, someone, tag_named(tenant, "双十一"))
    client = login(admin_staff)
    confirm = client.get(f"{change_url(group)}".replace("/change/", "/delete/"))
    assert confirm.status_code == 200
    response = client.post(change_url(group).replace("/change/", "/delete/"), {"post": "yes"})
    assert response.status_code == 302
    group.refresh_from_db()
    assert group.deleted is True and carried(tenant, someone) == set()


def test_the_tag_list_shows_how_many_customers_carry_each(tenant, admin_staff, login):
    actor = system_actor(tenant)
    tagging.create_tag_group(actor, name="活动", tags=["双十一", "618"], local=True)
    for _ in range(2):
        tagging.tag_customer(actor, CustomerFactory(tenant=tenant), tag_named(tenant, "618"))
    response = login(admin_staff).get(changelist_url(Tag))
    usage = {tag.name: tag.usage for tag in response.context["cl"].result_list}
    assert usage == {"双十一": 0, "618": 2}


def test_another_tenants_tags_and_rules_are_404(tenant, other_tenant, admin_staff, login):
    actor = system_actor(other_tenant)
    group = tagging.create_tag_group(actor, name="Zeta-Group", tags=["Zeta-Tag"], local=True)
    rule = autotag.create_rule(
        actor, name="Zeta-Rule", tag=Tag.objects.for_tenant(other_tenant).get(), rules=IN_SHANGHAI
    )
    client = login(admin_staff)
    for row in (group, Tag.objects.for_tenant(other_tenant).get(), rule):
        assert client.get(change_url(row)).status_code == 404
        assert client.post(change_url(row), {"name": "x"}).status_code == 404
        listing = client.get(changelist_url(type(row)))
        assert "Zeta" not in listing.content.decode()
    assert Tag.objects.for_tenant(other_tenant).get().name == "Zeta-Tag"


# --- auto-tag rules -------------------------------------------------------------------------------
def test_a_rule_is_added_and_run_from_the_console(tenant, admin_staff, login):
    actor = system_actor(tenant)
    tagging.create_tag_group(actor, name="地区", tags=["上海客户"], local=True)
    someone = CustomerFactory(tenant=tenant, staff=admin_staff)
    Customer.objects.for_tenant(tenant).filter(pk=someone.pk).update(city="上海")
    client = login(admin_staff)
    response = client.post(
        add_url(AutoTagRule),
        {
            "name": "上海",
            "tag": str(tag_named(tenant, "上海客户").pk),
            "rules": json.dumps(IN_SHANGHAI),
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = AutoTagRule.objects.for_tenant(tenant).get()
    ran = client.get(f"{change_url(rule)}".replace("/change/", "/run_now/"), follow=True)
    assert ran.status_code == 200
    assert carried(tenant, someone) == {"上海客户"}
    rule.refresh_from_db()
    assert rule.last_tagged == 1


def test_invalid_rules_are_an_error_on_the_rules_field(tenant, admin_staff, login):
    tagging.create_tag_group(system_actor(tenant), name="地区", tags=["上海客户"], local=True)
    response = login(admin_staff).post(
        add_url(AutoTagRule),
        {
            "name": "坏",
            "tag": str(tag_named(tenant, "上海客户").pk),
            "rules": '{"op": "and", "conditions": [{"field": "nope", "operator": "eq"}]}',
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "rules" in response.context["adminform"].form.errors
    assert not AutoTagRule.objects.for_tenant(tenant).exists()


# --- the customer list's action ------------------------------------------------------
def test_the_customer_list_tags_the_selection_in_the_background(
    tenant, sales_staff, other_sales, login, django_capture_on_commit_callbacks
):
    # given a sales staff's list (their own customers only)
    tagging.create_tag_group(system_actor(tenant), name="活动", tags=["双十一"], local=True)
    own = [CustomerFactory(tenant=tenant, staff=sales_staff) for _ in range(2)]
    other = CustomerFactory(tenant=tenant, staff=other_sales)
    client = login(sales_staff)
    selection = {
        "action": "bulk_tag_customers",
        "_selected_action": [str(c.pk) for c in own],
        "index": "0",
        "select_across": "0",
    }
    # when they choose the action, they get the page to choose tags
    page = client.post(changelist_url(Customer), selection)
    assert page.status_code == 200
    assert "bulk-tag-form" in page.content.decode()
    # and when they apply it, a job tags the selection
    promo = tag_named(tenant, "双十一")
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            changelist_url(Customer), {**selection, "apply": "1", "add": [str(promo.pk)]}
        )
    assert done.status_code == 302
    job = BackgroundJob.objects.for_tenant(tenant).get()
    assert job.status == BackgroundJob.Status.SUCCEEDED and job.created_by == sales_staff
    assert [carried(tenant, c) for c in own] == [{"双十一"}, {"双十一"}]
    assert carried(tenant, other) == set()


def test_selecting_across_a_filtered_list_tags_only_what_the_staff_may_see(
    tenant, sales_staff, other_sales, login, django_capture_on_commit_callbacks
):
    tagging.create_tag_group(system_actor(tenant), name="活动", tags=["双十一"], local=True)
    own = CustomerFactory(tenant=tenant, staff=sales_staff)
    other = CustomerFactory(tenant=tenant, staff=other_sales)
    with django_capture_on_commit_callbacks(execute=True):
        response = login(sales_staff).post(
            changelist_url(Customer),
            {
                "action": "bulk_tag_customers",
                "_selected_action": [str(own.pk)],
                "select_across": "1",
                "index": "0",
                "apply": "1",
                "add": [str(tag_named(tenant, "双十一").pk)],
            },
        )
    assert response.status_code == 302
    assert carried(tenant, own) == {"双十一"} and carried(tenant, other) == set()


def test_the_action_needs_tags(tenant, admin_staff, login):
    someone = CustomerFactory(tenant=tenant, staff=admin_staff)
    page = login(admin_staff).post(
        changelist_url(Customer),
        {
            "action": "bulk_tag_customers",
            "_selected_action": [str(someone.pk)],
            "index": "0",
            "apply": "1",
        },
    )
    assert page.status_code == 200
    assert page.context["form"].errors
    assert not BackgroundJob.objects.for_tenant(tenant).exists()


def test_every_tag_page_renders(tenant, admin_staff, login):
    actor = system_actor(tenant)
    group = tagging.create_tag_group(actor, name="活动", tags=["双十一"], local=True)
    tag = tag_named(tenant, "双十一")
    rule = autotag.create_rule(actor, name="上海", tag=tag, rules=IN_SHANGHAI)
    client = login(admin_staff)
    for model, row in ((TagGroup, group), (Tag, tag), (AutoTagRule, rule)):
        for url in (changelist_url(model), add_url(model), change_url(row)):
            response = client.get(url)
            assert response.status_code == 200, url
    page = client.get(change_url(group)).content.decode()
    assert "双十一" in page and "tags-TOTAL_FORMS" in page
