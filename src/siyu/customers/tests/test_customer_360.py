"""The console's customer list and customer 360 page: content, edits, scope, query budget."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.core.events import record_event
from siyu.customers import lifecycle, profiles, services
from siyu.customers.models import Customer, CustomerNote, CustomerTag, Follow
from siyu.engagement.models import StaffTask
from siyu.tenancy.services import system_actor
from siyu.testing.console import change_url, changelist_url
from siyu.testing.factories import CustomerFactory, GroupFactory, StaffFactory

TAGS = [
    {
        "group_id": "g1",
        "group_name": "等级",
        "tag": [{"id": "t1", "name": "高意向"}, {"id": "t2", "name": "老客户"}],
    }
]


@pytest.fixture
def system(tenant):
    return system_actor(tenant)


@pytest.fixture
def rich_customer(tenant, sales_staff, other_sales, system):
    """A realistic customer: two friendships with tags, groups, profile, notes, events."""
    services.sync_corp_tags(tenant, TAGS)
    customer = CustomerFactory(
        tenant=tenant, followed_by=[sales_staff, other_sales], name="李雷", state="cc_spring"
    )
    for follow in Follow.objects.for_tenant(tenant).filter(customer=customer):
        services.set_follow_tags(tenant, follow, ["t1", "t2"])
    from siyu.customers.models import Tag

    for tag in Tag.objects.for_tenant(tenant):  # (the tagging services keep these in step)
        CustomerTag.objects.for_tenant(tenant).get_or_create(
            tenant=tenant, customer=customer, tag=tag
        )
    for number in range(3):
        GroupFactory(tenant=tenant, owner=sales_staff, members=[customer], name=f"群{number}")
    profiles.create_custom_field(system, key="skin", label="肤质", type="choice", choices=["油性"])
    profiles.create_custom_field(system, key="card_no", label="会员卡号", type="number")
    profiles.update_profile(
        system, customer, phone="13812345678", city="杭州", birthday="1990-01-02"
    )
    profiles.set_custom_values(system, customer, {"skin": "油性", "card_no": 1024})
    for number in range(25):
        profiles.add_note(
            system,
            customer,
            kind="call",
            content=f"第{number}次回访",
            next_contact_at=timezone.now() + timedelta(days=number + 1) if number < 5 else None,
        )
    for _number in range(40):
        record_event(tenant, "material.opened", customer_id=customer.pk, payload={"title": "海报"})
    return Customer.objects.for_tenant(tenant).get(pk=customer.pk)


# --- the 360 page -------------------------------------------------------------------------------
def test_the_360_page_shows_everything_about_the_customer(
    rich_customer, admin_staff, sales_staff, login
):
    # when
    response = login(admin_staff).get(change_url(rich_customer))
    # then
    assert response.status_code == 200
    page = response.content.decode()
    for expected in [
        "李雷",
        "13812345678",  # an administrator may see phones
        "杭州",
        "高意向",
        "老客户",
        "群0",
        "群2",
        "cc_spring",
        sales_staff.name,
        "第24次回访",
        "肤质",
        rich_customer.external_userid,
        'id="timeline"',
    ]:
        assert expected in page, expected
    view = response.context["view"]
    assert (len(view.follows), len(view.groups), len(view.tags)) == (2, 3, 2)
    assert len(view.tasks) == 5 and len(view.notes) == 20
    assert view.timeline.next_cursor is not None


def test_a_sales_staff_sees_the_phone_masked_and_no_phone_input(tenant, sales_staff, login, system):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    profiles.update_profile(system, customer, phone="13812345678")
    response = login(sales_staff).get(change_url(customer))
    page = response.content.decode()
    assert "138****5678" in page and "13812345678" not in page
    assert 'name="phone"' not in page
    assert 'name="city"' in page  # they may still edit the rest of the profile


def count_queries(client, url) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm caches (content types, the session)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_the_360_page_renders_within_its_query_budget(
    tenant, rich_customer, sales_staff, admin_staff, login
):
    # given: a customer with nothing but one friendship, and the rich one
    plain = CustomerFactory(tenant=tenant, staff=sales_staff)
    client = login(admin_staff)
    # then: the page costs the same number of queries, within the budget
    queries = count_queries(client, change_url(rich_customer))
    assert queries == count_queries(client, change_url(plain))
    assert queries <= 45  # ~20 of them are the console's sidebar permission checks


def test_a_sales_staff_cannot_open_another_staffs_customer(tenant, sales_staff, other_sales, login):
    theirs = CustomerFactory(tenant=tenant, staff=other_sales)
    client = login(sales_staff)
    assert client.get(change_url(theirs)).status_code == 404
    url = change_url(theirs).replace("change/", "notes/")
    assert client.post(url, {"kind": "note", "content": "x"}).status_code == 404
    assert not CustomerNote.objects.for_tenant(tenant).exists()


def test_another_tenants_customer_is_404_everywhere(other_tenant, admin_staff, login):
    b_staff = StaffFactory(tenant=other_tenant, wecom_userid="b-sales")
    foreign = CustomerFactory(tenant=other_tenant, staff=b_staff, name="Zeta")
    client = login(admin_staff)
    base = change_url(foreign).removesuffix("change/")
    assert client.get(change_url(foreign)).status_code == 404
    assert client.get(base + "timeline/").status_code == 404
    for url in ("profile/", "custom-fields/", "notes/"):
        assert client.post(base + url, {"city": "x", "content": "x"}).status_code == 404
    row = Customer.objects.for_tenant(other_tenant).get(pk=foreign.pk)
    assert row.city == "" and not CustomerNote.objects.for_tenant(other_tenant).exists()


def test_the_360_page_does_not_accept_the_admin_form(tenant, admin_staff, sales_staff, login):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff, name="赵六")
    response = login(admin_staff).post(change_url(customer), {"name": "hijacked"})
    assert response.status_code == 405
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).name == "赵六"


def test_a_merged_away_record_links_to_the_kept_customer(tenant, admin_staff, sales_staff, login):
    kept = CustomerFactory(tenant=tenant, staff=sales_staff, name="Kept")
    gone = CustomerFactory(tenant=tenant, staff=sales_staff, name="Gone")
    Customer.objects.for_tenant(tenant).filter(pk=gone.pk).update(merged_into=kept)
    client = login(admin_staff)
    assert f'href="{change_url(kept)}"' in client.get(change_url(gone)).content.decode()
    # and the kept customer's timeline tells the merged record's history
    entries = client.get(change_url(kept)).context["view"].timeline.entries
    assert {entry.customer_id for entry in entries} == {kept.pk, gone.pk}


# --- editing on the 360 page
def base_url(customer) -> str:
    return change_url(customer).removesuffix("change/")


def test_the_profile_form_saves_through_the_service(tenant, sales_staff, login):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    response = login(sales_staff).post(
        base_url(customer) + "profile/",
        {"city": "杭州", "province": "浙江", "interests": "咖啡, 烘焙", "age_band": "25-34"},
    )
    assert response.status_code == 302 and response.url.endswith("#profile")
    row = Customer.objects.for_tenant(tenant).get(pk=customer.pk)
    assert (row.city, row.province, row.interests, row.age_band) == (
        "杭州",
        "浙江",
        ["咖啡", "烘焙"],
        "25-34",
    )


def test_a_refused_profile_shows_the_error_on_its_field(tenant, admin_staff, sales_staff, login):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    response = login(admin_staff).post(base_url(customer) + "profile/", {"phone": "12345"})
    assert response.status_code == 200
    assert response.context["profile_form"].errors["phone"]


def test_a_sales_staff_cannot_set_a_phone_by_posting_it(tenant, sales_staff, login):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    login(sales_staff).post(base_url(customer) + "profile/", {"phone": "13812345678"})
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).phone == ""


def test_custom_fields_are_edited_with_typed_inputs(
    tenant, admin_staff, sales_staff, login, system
):
    profiles.create_custom_field(system, key="card_no", label="会员卡号", type="number")
    profiles.create_custom_field(
        system, key="likes", label="偏好", type="multi_choice", choices=["咖啡", "茶"]
    )
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    client = login(admin_staff)
    # a bad number is shown on its field
    response = client.post(base_url(customer) + "custom-fields/", {"custom-card_no": "abc"})
    assert response.status_code == 200
    assert response.context["custom_form"].errors["card_no"]
    # good values are stored typed
    response = client.post(
        base_url(customer) + "custom-fields/",
        {"custom-card_no": "42", "custom-likes": ["茶", "咖啡"]},
    )
    assert response.status_code == 302
    custom = Customer.objects.for_tenant(tenant).get(pk=customer.pk).custom
    assert custom == {"card_no": 42, "likes": ["咖啡", "茶"]}


def test_adding_a_follow_up_with_a_next_contact_creates_a_task(tenant, sales_staff, login):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    due = timezone.localtime(timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    response = login(sales_staff).post(
        base_url(customer) + "notes/",
        {
            "kind": "call",
            "content": "约了周五到店",
            "next_contact_at": due.strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert response.status_code == 302
    note = CustomerNote.objects.for_tenant(tenant).get()
    task = StaffTask.objects.for_tenant(tenant).get()
    assert (note.content, note.author, task.due_at, task.staff) == (
        "约了周五到店",
        sales_staff,
        due,
        sales_staff,
    )


def test_notes_are_edited_and_deleted_on_the_page(tenant, sales_staff, login):
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    client = login(sales_staff)
    client.post(base_url(customer) + "notes/", {"kind": "note", "content": "first"})
    note = CustomerNote.objects.for_tenant(tenant).get()
    page = client.get(change_url(customer) + f"?edit_note={note.pk}").content.decode()
    assert 'name="edit-content"' in page
    client.post(
        base_url(customer) + f"notes/{note.pk}/", {"edit-kind": "chat", "edit-content": "改"}
    )
    note.refresh_from_db()
    assert (note.kind, note.content) == ("chat", "改")
    client.post(base_url(customer) + f"notes/{note.pk}/delete/")
    assert not CustomerNote.objects.for_tenant(tenant).exists()


def test_older_timeline_entries_load_in_pages(rich_customer, admin_staff, login):
    client = login(admin_staff)
    first = client.get(change_url(rich_customer)).context["view"].timeline
    response = client.get(base_url(rich_customer) + "timeline/", {"cursor": first.next_cursor})
    assert response.status_code == 200
    assert response.content.decode().count("timeline-entry") == 20
    bad = client.get(base_url(rich_customer) + "timeline/", {"cursor": "garbage"})
    assert bad.status_code == 404


# --- the customer list
@pytest.fixture
def listed(tenant, sales_staff, other_sales, system):
    services.sync_corp_tags(tenant, TAGS)
    a = CustomerFactory(tenant=tenant, staff=sales_staff, name="Alpha", state="cc_spring")
    b = CustomerFactory(tenant=tenant, staff=other_sales, name="Bravo", state="gc_group")
    c = CustomerFactory(tenant=tenant, staff=sales_staff, name="Charlie", state="cc_summer")
    from siyu.customers.models import Tag

    CustomerTag.objects.for_tenant(tenant).get_or_create(
        tenant=tenant, customer=b, tag=Tag.objects.for_tenant(tenant).get(wecom_tag_id="t1")
    )
    Customer.objects.for_tenant(tenant).filter(pk=c.pk).update(lifecycle_stage="at_risk")
    profiles.update_profile(system, b, phone="13812345678")
    follow = Follow.objects.for_tenant(tenant).get(customer=a)
    services.upsert_follow(
        tenant, customer=a, staff=sales_staff, added_at=follow.added_at, remark="咖啡老板"
    )
    return {"a": a, "b": b, "c": c}


def names(response) -> list[str]:
    return sorted(customer.name for customer in response.context["cl"].result_list)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["Alpha", "Bravo", "Charlie"]),
        ({"lifecycle_stage__exact": "at_risk"}, ["Charlie"]),
        ({"channel": "cc_"}, ["Alpha", "Charlie"]),
        ({"status__exact": "active"}, ["Alpha", "Bravo", "Charlie"]),
        ({"q": "brav"}, ["Bravo"]),
        ({"q": "咖啡"}, ["Alpha"]),  # the staff's remark
        ({"q": "+86 138 1234 5678"}, ["Bravo"]),  # the phone, by fingerprint
        ({"q": "1381234"}, []),  # a partial number finds nobody
    ],
)
def test_the_list_filters_and_searches(query, expected, listed, admin_staff, login):
    response = login(admin_staff).get(changelist_url(Customer), query)
    assert response.status_code == 200
    assert names(response) == expected


def test_the_list_filters_by_tag_and_owner(tenant, listed, admin_staff, sales_staff, login):
    from siyu.customers.models import Tag

    client = login(admin_staff)
    tag = Tag.objects.for_tenant(tenant).get(wecom_tag_id="t1")
    assert names(client.get(changelist_url(Customer), {"tag": tag.pk})) == ["Bravo"]
    owned = client.get(changelist_url(Customer), {"owner__id__exact": sales_staff.pk})
    assert names(owned) == ["Alpha", "Charlie"]


def test_a_sales_staff_lists_and_finds_only_their_customers(listed, sales_staff, login):
    client = login(sales_staff)
    assert names(client.get(changelist_url(Customer))) == ["Alpha", "Charlie"]
    assert names(client.get(changelist_url(Customer), {"q": "13812345678"})) == []


def test_the_list_page_has_no_query_per_row(tenant, sales_staff, admin_staff, login):
    client = login(admin_staff)
    CustomerFactory(tenant=tenant, staff=sales_staff)
    few = count_queries(client, changelist_url(Customer))
    for _number in range(30):
        CustomerFactory(tenant=tenant, staff=sales_staff)
    assert count_queries(client, changelist_url(Customer)) == few


def test_merged_away_customers_are_not_listed(tenant, sales_staff, admin_staff, login):
    kept = CustomerFactory(tenant=tenant, staff=sales_staff, name="Kept")
    gone = CustomerFactory(tenant=tenant, staff=sales_staff, name="Gone")
    Customer.objects.for_tenant(tenant).filter(pk=gone.pk).update(merged_into=kept)
    assert names(login(admin_staff).get(changelist_url(Customer))) == ["Kept"]


# --- settings pages
def test_the_lifecycle_rules_page_edits_the_tenants_rules(tenant, admin_staff, login):
    client = login(admin_staff)
    response = client.get("/console/customers/lifecyclepolicy/")
    assert response.status_code == 302
    policy = lifecycle.policy_for(tenant)
    response = client.post(
        response.url,
        {
            "new_days": 5,
            "silent_after_days": 10,
            "at_risk_after_days": 20,
            "churned_after_days": 60,
            "interaction_types": "order.paid\nquiz.answered",
        },
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.new_days, policy.interaction_types) == (5, ["order.paid", "quiz.answered"])
    refused = client.post(
        change_url(policy),
        {
            "new_days": 5,
            "silent_after_days": 50,
            "at_risk_after_days": 20,
            "churned_after_days": 60,
        },
    )
    assert refused.status_code == 200 and refused.context["adminform"].form.errors


def test_custom_fields_are_defined_in_the_console(tenant, admin_staff, sales_staff, login):
    client = login(admin_staff)
    response = client.post(
        "/console/customers/customfield/add/",
        {
            "key": "skin",
            "label": "肤质",
            "type": "choice",
            "choices": "干性\n油性",
            "order": 0,
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    field = profiles.custom_fields(tenant)[0]
    assert (field.key, field.choices) == ("skin", ["干性", "油性"])
    duplicate = client.post(
        "/console/customers/customfield/add/",
        {"key": "skin", "label": "x", "type": "text", "order": 0},
    )
    assert duplicate.status_code == 200
    assert login(sales_staff).get("/console/customers/customfield/add/").status_code == 403
