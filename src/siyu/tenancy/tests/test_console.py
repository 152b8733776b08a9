"""The console's tenant, department, staff, role and API key pages."""

from __future__ import annotations

import re

import pytest

from siyu.core.models import AuditEntry, Event
from siyu.tenancy import services
from siyu.tenancy.models import ApiKey, Department, Role, Staff, Tenant
from siyu.testing.console import OTHER_SECRET, change_url, changelist_url
from siyu.testing.factories import DepartmentFactory, StaffFactory

TENANCY_MODELS = ["staff", "department", "role", "apikey"]
RAW_KEY = re.compile(r"siyu_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}")


def _post_staff(client, **fields):
    data = {"wecom_userid": "", "name": "", "department": "", "roles": [], **fields}
    return client.post("/console/tenancy/staff/add/", data, follow=True)


# --- tenant isolation --------------------------------------------------------------------
@pytest.mark.parametrize("kind", TENANCY_MODELS)
def test_another_tenants_rows_are_404_on_get_and_post(kind, admin_staff, other_rows, login):
    # given
    client = login(admin_staff)
    url = change_url(other_rows[kind])
    # when / then
    assert client.get(url).status_code == 404
    assert client.post(url, {"name": "hijacked"}).status_code == 404
    assert client.get(url.replace("/change/", "/history/")).status_code == 404
    assert client.get(url.replace("/change/", "/delete/")).status_code in (403, 404)


@pytest.mark.parametrize("kind", TENANCY_MODELS)
def test_another_tenants_rows_never_appear_in_changelists(kind, admin_staff, other_rows, login):
    client = login(admin_staff)
    response = client.get(changelist_url(type(other_rows[kind])))
    assert response.status_code == 200
    assert "Zeta" not in response.content.decode()


def test_nothing_of_another_tenant_changes_through_a_404(admin_staff, other_rows, login):
    client = login(admin_staff)
    client.post(change_url(other_rows["staff"]), {"name": "hijacked", "roles": []})
    other_staff = Staff.objects.for_tenant(other_rows["tenant"]).get(pk=other_rows["staff"].pk)
    assert other_staff.name == "Zeta-Staff"


def test_form_choices_and_filters_offer_only_the_own_tenants_rows(admin_staff, other_rows, login):
    client = login(admin_staff)
    for url in [
        "/console/tenancy/staff/add/",
        "/console/tenancy/staff/",
        "/console/tenancy/apikey/add/",
    ]:
        assert "Zeta" not in client.get(url).content.decode(), url


def test_another_tenants_department_cannot_be_chosen_by_id(admin_staff, other_rows, login):
    client = login(admin_staff)
    response = _post_staff(
        client, wecom_userid="new1", name="New", department=other_rows["department"].pk
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["department"]
    assert not Staff.objects.for_tenant(admin_staff.tenant).filter(wecom_userid="new1").exists()


def test_a_tenant_admin_sees_and_edits_only_their_own_tenant(admin_staff, other_rows, login):
    client = login(admin_staff)
    listing = client.get("/console/tenancy/tenant/").content.decode()
    assert "Brand A" in listing and "Brand B" not in listing
    assert client.get(change_url(other_rows["tenant"])).status_code == 404
    assert client.get("/console/tenancy/tenant/add/").status_code == 403


def test_django_user_and_group_pages_are_not_in_the_console(admin_staff, login):
    client = login(admin_staff)
    assert client.get("/console/auth/user/").status_code == 404
    assert client.get("/console/auth/group/").status_code == 404


# --- data scope ----------------------------------------------------------------------------
def test_sales_sees_only_their_own_staff_row(sales_staff, admin_staff, login):
    client = login(sales_staff)
    response = client.get("/console/tenancy/staff/")
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [sales_staff]
    assert client.get(change_url(sales_staff)).status_code == 200
    assert client.get(change_url(admin_staff)).status_code == 404


def test_sales_cannot_open_pages_their_roles_do_not_grant(sales_staff, login, tenant):
    department = DepartmentFactory(tenant=tenant)
    client = login(sales_staff)
    assert client.get("/console/tenancy/department/").status_code == 403
    assert client.get(change_url(department)).status_code == 403
    assert client.get("/console/tenancy/staff/add/").status_code == 403
    assert client.post(change_url(sales_staff), {"name": "Renamed"}).status_code == 403


# --- tenant secrets --------------------------------------------------------------------------
@pytest.fixture
def tenant_with_secrets(tenant, admin_staff, actor_of):
    return services.update_tenant(
        tenant,
        by=actor_of(admin_staff),
        wecom_contact_secret="contact-secret-abcdefghijklmnop",
        wecom_callback_token="Token1234567890",
        wecom_callback_aes_key="A" * 43,
    )


@pytest.mark.parametrize("who", ["admin_staff", "operator_staff"])
def test_the_tenant_page_never_shows_a_secret_in_full(who, tenant_with_secrets, login, request):
    client = login(request.getfixturevalue(who))
    for url in [change_url(tenant_with_secrets), "/console/tenancy/tenant/"]:
        page = client.get(url).content.decode()
        for secret in ["contact-secret-abcdefghijklmnop", "Token1234567890", "A" * 43]:
            assert secret not in page, url
    page = client.get(change_url(tenant_with_secrets)).content.decode()
    assert tenant_with_secrets.masked_secrets()["wecom_contact_secret"] in page


def _tenant_form(tenant, **fields):
    return {"name": tenant.name, "wecom_corp_id": tenant.wecom_corp_id, **fields}


def test_blank_secret_inputs_keep_the_stored_values(tenant_with_secrets, admin_staff, login):
    client = login(admin_staff)
    response = client.post(
        change_url(tenant_with_secrets), _tenant_form(tenant_with_secrets, name="Brand A2")
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(pk=tenant_with_secrets.pk)
    assert tenant.name == "Brand A2"
    assert tenant.wecom_contact_secret == "contact-secret-abcdefghijklmnop"


def test_a_new_secret_is_stored_and_audited_masked(tenant_with_secrets, admin_staff, login):
    client = login(admin_staff)
    form = _tenant_form(tenant_with_secrets, wecom_contact_secret="brand-new-secret-0987654321")
    assert client.post(change_url(tenant_with_secrets), form).status_code == 302
    assert Tenant.objects.get(pk=tenant_with_secrets.pk).wecom_contact_secret == (
        "brand-new-secret-0987654321"
    )
    entry = (
        AuditEntry.objects.for_tenant(tenant_with_secrets).filter(action="tenant.updated").first()
    )
    assert "brand-new-secret-0987654321" not in str(entry.changes)


def test_an_invalid_aes_key_is_shown_on_its_field(tenant_with_secrets, admin_staff, login):
    client = login(admin_staff)
    response = client.post(
        change_url(tenant_with_secrets),
        _tenant_form(tenant_with_secrets, wecom_callback_aes_key="short"),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["wecom_callback_aes_key"]
    assert Tenant.objects.get(pk=tenant_with_secrets.pk).wecom_callback_aes_key == "A" * 43


def test_a_tenant_admin_cannot_deactivate_their_tenant(tenant, admin_staff, login):
    client = login(admin_staff)
    client.post(change_url(tenant), _tenant_form(tenant, is_active=""))
    assert Tenant.objects.get(pk=tenant.pk).is_active


def test_a_platform_superuser_adds_a_tenant_through_the_service(
    platform_superuser, other_rows, client
):
    assert client.login(username="platform-root", password="Siyu-test-pass-42")
    assert "Brand B" in client.get("/console/tenancy/tenant/").content.decode()
    assert OTHER_SECRET not in client.get(change_url(other_rows["tenant"])).content.decode()
    response = client.post("/console/tenancy/tenant/add/", {"name": "Brand C", "slug": "brand-c"})
    assert response.status_code == 302
    created = Tenant.objects.get(slug="brand-c")
    assert Role.objects.for_tenant(created).filter(code="admin").exists()
    assert Event.objects.for_tenant(created).filter(type="tenant.created").exists()


def test_a_duplicate_tenant_slug_is_a_form_error(platform_superuser, client):
    client.login(username="platform-root", password="Siyu-test-pass-42")
    response = client.post("/console/tenancy/tenant/add/", {"name": "Again", "slug": "brand-a"})
    assert response.status_code == 200
    assert "brand-a" in str(response.context["adminform"].form.errors["slug"])


# --- staff ------------------------------------------------------------------------------------
def test_adding_staff_through_the_console_calls_the_service(admin_staff, login, tenant):
    # given
    client = login(admin_staff)
    north = DepartmentFactory(tenant=tenant, name="North")
    sales = Role.objects.for_tenant(tenant).get(code="sales")
    # when
    response = _post_staff(
        client, wecom_userid="lily", name="Lily", department=north.pk, roles=[sales.pk]
    )
    # then
    assert response.status_code == 200
    staff = Staff.objects.for_tenant(tenant).get(wecom_userid="lily")
    assert staff.department == north
    assert list(staff.roles.values_list("code", flat=True)) == ["sales"]
    event = Event.objects.for_tenant(tenant).get(type="staff.added", staff=staff)
    assert event.source == "console"
    entry = AuditEntry.objects.for_tenant(tenant).get(action="staff.added", object_id=str(staff.pk))
    assert entry.staff == admin_staff and entry.channel == "console"
    assert entry.ip_address == "127.0.0.1"


def test_a_console_login_can_be_created_with_the_staff(admin_staff, login, tenant, client):
    admin_client = login(admin_staff)
    _post_staff(
        admin_client,
        wecom_userid="mia",
        name="Mia",
        login_username="mia",
        login_password="Another-pass-99",
    )
    staff = Staff.objects.for_tenant(tenant).get(wecom_userid="mia")
    assert staff.user.username == "mia"
    admin_client.logout()
    assert client.login(username="mia", password="Another-pass-99")


@pytest.mark.parametrize(
    ("fields", "field_with_error"),
    [
        ({"wecom_userid": "bad id!", "name": "X"}, "wecom_userid"),
        ({"wecom_userid": "boss", "name": "Duplicate"}, "wecom_userid"),
        (
            {"wecom_userid": "ok1", "name": "X", "login_username": "x", "login_password": "123"},
            "password",
        ),
    ],
    ids=["invalid-userid", "duplicate-userid", "weak-password"],
)
def test_bad_staff_input_is_shown_on_the_form(fields, field_with_error, admin_staff, login, tenant):
    client = login(admin_staff)
    before = Staff.objects.for_tenant(tenant).count()
    response = _post_staff(client, **fields)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors, "the form shows the service's refusal"
    if field_with_error != "password":
        assert field_with_error in errors
    assert Staff.objects.for_tenant(tenant).count() == before  # the refused attempt rolled back


def test_editing_staff_changes_roles_through_the_service(admin_staff, sales_staff, login, tenant):
    client = login(admin_staff)
    operator = Role.objects.for_tenant(tenant).get(code="operator")
    response = client.post(
        change_url(sales_staff), {"name": "Sales One", "department": "", "roles": [operator.pk]}
    )
    assert response.status_code == 302
    sales_staff.refresh_from_db()
    assert sales_staff.name == "Sales One"
    assert list(sales_staff.roles.values_list("code", flat=True)) == ["operator"]
    entry = AuditEntry.objects.for_tenant(tenant).get(action="staff.updated")
    assert entry.changes["roles"] == [["sales"], ["operator"]]


def test_removing_your_own_admin_role_is_refused_with_a_message(admin_staff, login, tenant):
    client = login(admin_staff)
    response = client.post(change_url(admin_staff), {"name": admin_staff.name, "roles": []})
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors()
    assert admin_staff.roles.filter(code="admin").exists()


def test_mark_departed_action(admin_staff, sales_staff, login, tenant):
    client = login(admin_staff)
    response = client.post(
        "/console/tenancy/staff/",
        {"action": "mark_departed", "_selected_action": [sales_staff.pk, admin_staff.pk]},
        follow=True,
    )
    assert response.status_code == 200
    sales_staff.refresh_from_db()
    admin_staff.refresh_from_db()
    assert sales_staff.status == Staff.Status.DEPARTED
    assert admin_staff.status == Staff.Status.ACTIVE  # nobody marks themselves departed
    texts = [str(message) for message in response.context["messages"]]
    assert any(admin_staff.name in text for text in texts)
    assert (
        Event.objects.for_tenant(tenant).filter(type="staff.departed", staff=sales_staff).exists()
    )


# --- departments and roles ----------------------------------------------------------------
def test_departments_are_created_and_moved_through_services(admin_staff, login, tenant):
    client = login(admin_staff)
    client.post(
        "/console/tenancy/department/add/", {"name": "North", "parent": "", "wecom_id": "7"}
    )
    north = Department.objects.for_tenant(tenant).get(name="North")
    shop = DepartmentFactory(tenant=tenant, name="Shop", parent=north)
    response = client.post(change_url(north), {"name": "North", "parent": shop.pk, "wecom_id": "7"})
    assert response.status_code == 200  # a department cannot move below itself
    assert response.context["adminform"].form.errors["parent"]
    response = client.post(change_url(shop), {"name": "Shop 1", "parent": "", "wecom_id": ""})
    assert response.status_code == 302
    shop.refresh_from_db()
    assert (shop.name, shop.parent) == ("Shop 1", None)
    assert AuditEntry.objects.for_tenant(tenant).filter(action="department.updated").exists()


def test_role_permissions_are_edited_one_per_line(admin_staff, login, tenant):
    client = login(admin_staff)
    analyst = Role.objects.for_tenant(tenant).get(code="analyst")
    page = client.get(change_url(analyst)).content.decode()
    assert "*.view_*\nanalytics.*" in page
    response = client.post(
        change_url(analyst),
        {
            "name": "Data team",
            "permissions": "*.view_*\n\n core.export_data \n",
            "data_scope": "department",
        },
    )
    assert response.status_code == 302
    analyst.refresh_from_db()
    assert (analyst.name, analyst.permissions, analyst.data_scope) == (
        "Data team",
        ["*.view_*", "core.export_data"],
        "department",
    )


def test_an_invalid_permission_pattern_is_shown_on_its_field(admin_staff, login, tenant):
    client = login(admin_staff)
    analyst = Role.objects.for_tenant(tenant).get(code="analyst")
    response = client.post(
        change_url(analyst),
        {"name": "A", "permissions": "not a permission", "data_scope": "tenant"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["permissions"]


def test_an_admin_cannot_lock_themselves_out_of_roles(admin_staff, login, tenant):
    client = login(admin_staff)
    admin_role = Role.objects.for_tenant(tenant).get(code="admin")
    response = client.post(
        change_url(admin_role), {"name": "Admin", "permissions": "*.view_*", "data_scope": "tenant"}
    )
    assert response.status_code == 200
    admin_role.refresh_from_db()
    assert admin_role.permissions == ["*"]


def test_a_custom_role_is_added(admin_staff, login, tenant):
    client = login(admin_staff)
    response = client.post(
        "/console/tenancy/role/add/",
        {
            "code": "shop-lead",
            "name": "Shop lead",
            "permissions": "tenancy.view_staff",
            "data_scope": "department",
        },
    )
    assert response.status_code == 302
    role = Role.objects.for_tenant(tenant).get(code="shop-lead")
    assert (role.permissions, role.is_builtin) == (["tenancy.view_staff"], False)


# --- API keys ---------------------------------------------------------------------------------
def test_api_key_plaintext_is_shown_once_and_the_hash_never(admin_staff, login, tenant):
    client = login(admin_staff)
    response = client.post(
        "/console/tenancy/apikey/add/",
        {
            "name": "BI export",
            "scopes": ["staff:read", "events:read"],
            "staff": "",
            "expires_in_days": "30",
        },
        follow=True,
    )
    assert response.status_code == 200
    shown = RAW_KEY.findall(response.content.decode())
    assert len(shown) == 1
    key = services.authenticate_api_key(shown[0])
    assert key is not None and key.name == "BI export"
    assert key.scopes == ["staff:read", "events:read"] and key.expires_at is not None
    for url in ["/console/tenancy/apikey/", change_url(key)]:
        page = client.get(url).content.decode()
        assert shown[0] not in page
        assert key.key_hash not in page
    assert AuditEntry.objects.for_tenant(tenant).filter(action="apikey.created").exists()


def test_an_api_key_without_scopes_is_a_form_error(admin_staff, login, tenant):
    client = login(admin_staff)
    response = client.post("/console/tenancy/apikey/add/", {"name": "x", "scopes": []})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["scopes"]
    assert not ApiKey.objects.for_tenant(tenant).exists()


def test_api_keys_are_revoked_not_edited(admin_staff, login, tenant, actor_of):
    key, _raw = services.create_api_key(
        tenant, name="k", scopes=["staff:read"], by=actor_of(admin_staff)
    )
    client = login(admin_staff)
    assert client.post(change_url(key), {"name": "renamed"}).status_code == 403
    client.post("/console/tenancy/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None and key.name == "k"


def test_staff_of_another_tenant_cannot_be_chosen_for_a_key(admin_staff, other_rows, login, tenant):
    client = login(admin_staff)
    response = client.post(
        "/console/tenancy/apikey/add/",
        {"name": "x", "scopes": ["staff:read"], "staff": other_rows["staff"].pk},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["staff"]


def test_sales_staff_cannot_see_api_keys(sales_staff, login):
    client = login(sales_staff)
    assert client.get("/console/tenancy/apikey/").status_code == 403


def test_a_staff_factory_member_is_listed_for_the_admin(admin_staff, login, tenant):
    StaffFactory(tenant=tenant, name="Listed Member")
    assert "Listed Member" in login(admin_staff).get("/console/tenancy/staff/").content.decode()
