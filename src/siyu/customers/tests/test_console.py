"""The console's customer and tag pages: read-only, tenant-isolated, data-scoped."""

from __future__ import annotations

import pytest

from siyu.customers import services
from siyu.customers.models import Customer, Follow, Tag, TagGroup
from siyu.testing.console import change_url, changelist_url
from siyu.testing.factories import CustomerFactory, StaffFactory

TAGS = [{"group_id": "etG", "group_name": "Zeta-Group", "tag": [{"id": "etT", "name": "Zeta-Tag"}]}]


@pytest.fixture
def b_rows(other_tenant):
    """A customer, tag group and tag of tenant B, with names that cannot appear in A."""
    b_staff = StaffFactory(tenant=other_tenant, wecom_userid="b-sales", name="Zeta-Staff")
    customer = CustomerFactory(tenant=other_tenant, name="Zeta-Customer", staff=b_staff)
    services.sync_corp_tags(other_tenant, TAGS)
    return {
        "customer": customer,
        "taggroup": TagGroup.objects.for_tenant(other_tenant).get(),
        "tag": Tag.objects.for_tenant(other_tenant).get(),
    }


@pytest.mark.parametrize("kind", ["customer", "taggroup", "tag"])
def test_another_tenants_rows_are_404_and_never_listed(kind, admin_staff, b_rows, login):
    client = login(admin_staff)
    assert client.get(change_url(b_rows[kind])).status_code == 404
    listing = client.get(changelist_url(type(b_rows[kind])))
    assert listing.status_code == 200
    assert "Zeta" not in listing.content.decode()


def test_the_customer_list_shows_owner_status_and_friendship_count(
    tenant, admin_staff, sales_staff, other_sales, login
):
    # given
    customer = CustomerFactory(tenant=tenant, name="王五", followed_by=[sales_staff, other_sales])
    # when
    response = login(admin_staff).get(changelist_url(Customer))
    # then
    assert response.status_code == 200
    (row,) = response.context["cl"].result_list
    assert (row, row.owner, row.active_follows) == (customer, sales_staff, 2)
    page = response.content.decode()
    assert "王五" in page and "正常" in page


def test_the_list_filters_by_first_add_date_with_both_ends_included(
    tenant, admin_staff, sales_staff, login
):
    from datetime import datetime, time

    from django.utils import timezone

    def added_on(day: int, hour: int) -> Customer:
        moment = timezone.make_aware(datetime.combine(datetime(2026, 3, day), time(hour)))
        return CustomerFactory(tenant=tenant, staff=sales_staff, added_at=moment)

    before, first_day, last_day, after = (
        added_on(9, 23),
        added_on(10, 0),
        added_on(12, 23),
        added_on(13, 0),
    )
    client = login(admin_staff)
    # when
    response = client.get(
        changelist_url(Customer),
        {"first_added_at_from": "2026-03-10", "first_added_at_to": "2026-03-12"},
    )
    # then
    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == {first_day, last_day}
    assert response.context["cl"].date_hierarchy is None  # it would read every row's date
    # a date that is not one filters nothing (and is no error)
    response = client.get(changelist_url(Customer), {"first_added_at_from": "2026-02-31"})
    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == {before, first_day, last_day, after}


def test_sales_see_only_the_customers_they_own(tenant, sales_staff, other_sales, login):
    # given
    own = CustomerFactory(tenant=tenant, staff=sales_staff)
    other = CustomerFactory(tenant=tenant, staff=other_sales)
    client = login(sales_staff)
    # when
    response = client.get(changelist_url(Customer))
    # then
    assert list(response.context["cl"].result_list) == [own]
    assert client.get(change_url(own)).status_code == 200
    assert client.get(change_url(other)).status_code == 404


def test_the_customer_page_is_read_only_with_friendships_and_tags(
    tenant, admin_staff, sales_staff, login
):
    # given
    services.sync_corp_tags(
        tenant, [{"group_id": "g1", "group_name": "等级", "tag": [{"id": "t1", "name": "高意向"}]}]
    )
    customer = CustomerFactory(tenant=tenant, name="赵六", staff=sales_staff, state="cc_x")
    follow = Follow.objects.for_tenant(tenant).get(customer=customer)
    services.set_follow_tags(tenant, follow, ["t1"])
    client = login(admin_staff)
    # when
    response = client.get(change_url(customer))
    # then
    assert response.status_code == 200
    page = response.content.decode()
    assert "高意向" in page and sales_staff.name in page and "cc_x" in page
    assert 'name="_save"' not in page
    client.post(change_url(customer), {"name": "hijacked"})
    assert Customer.objects.for_tenant(tenant).get(pk=customer.pk).name == "赵六"


def test_the_tag_pages_list_the_tenants_tags(tenant, admin_staff, login):
    services.sync_corp_tags(
        tenant, [{"group_id": "g1", "group_name": "兴趣", "tag": [{"id": "t1", "name": "咖啡"}]}]
    )
    client = login(admin_staff)
    assert "咖啡" in client.get(changelist_url(Tag)).content.decode()
    group = TagGroup.objects.for_tenant(tenant).get()
    assert "咖啡" in client.get(change_url(group)).content.decode()


def test_the_customer_filters_offer_only_the_own_tenants_staff(admin_staff, b_rows, login):
    page = login(admin_staff).get(changelist_url(Customer)).content.decode()
    assert "Zeta-Staff" not in page


def test_list_links_keep_the_filters_and_each_link_is_its_own(tenant, admin_staff, login):
    """The change list remembers the query strings it builds; links must still differ."""
    from urllib.parse import parse_qs

    CustomerFactory.create_batch(51, tenant=tenant)
    response = login(admin_staff).get(
        changelist_url(Customer), {"status__exact": "active", "o": "2"}
    )
    assert response.status_code == 200
    change_list = response.context["cl"]
    assert change_list.result_count == 51 and change_list.multi_page

    def params(query: str) -> dict[str, list[str]]:
        return parse_qs(query.lstrip("?"))

    second_page = params(change_list.get_query_string({"p": 2}))
    assert second_page == {"status__exact": ["active"], "o": ["2"], "p": ["2"]}
    resorted = params(change_list.get_query_string({"o": "-2"}))
    assert resorted == {"status__exact": ["active"], "o": ["-2"]}
    unfiltered = params(change_list.get_query_string(remove=["status"]))
    assert unfiltered == {"o": ["2"]}
    assert change_list.get_query_string({"p": 2}) == change_list.get_query_string({"p": 2})
    page = response.content.decode()
    assert "?o=2&amp;p=2&amp;status__exact=active" in page  # the next-page link
