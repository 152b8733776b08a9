"""The staff API: tenant isolation (404, never 403), data scopes, writes through services."""

import pytest

from siyu.core.models import Event
from siyu.tenancy.models import Staff
from siyu.testing.api import ApiClient
from siyu.testing.factories import DepartmentFactory, StaffFactory


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def ids(items):
    return [item["id"] for item in items]


@pytest.fixture
def b_staff(other_tenant):
    """A staff member of tenant B, whom nobody in tenant A may see or touch."""
    return StaffFactory(tenant=other_tenant, roles=["admin"], wecom_userid="b-boss", name="B Boss")


@pytest.fixture(params=["api_key", "session"])
def a_admin(request, tenant, admin_staff, api_as, session_api) -> ApiClient:
    """Tenant A's administrator, through an API key acting as them or their console session."""
    if request.param == "api_key":
        return api_as(tenant, staff=admin_staff)
    return session_api(admin_staff)


# --- tenant isolation --------------------------------------------------------------------
def test_other_tenants_staff_never_appear_in_the_list(tenant, admin_staff, b_staff, a_admin):
    mine = StaffFactory(tenant=tenant, name="Mine")
    items = a_admin.walk("/staff")
    assert ids(items) == [mine.pk, admin_staff.pk]
    assert b_staff.pk not in ids(a_admin.walk("/staff", q="boss"))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/staff/{id}", None),
        ("PATCH", "/staff/{id}", {"name": "Hijacked"}),
        ("POST", "/staff/{id}/depart", None),
    ],
    ids=["get", "patch", "depart"],
)
def test_other_tenants_staff_are_404_not_403(a_admin, b_staff, method, path, body):
    # when
    response = a_admin.request(method, path.format(id=b_staff.pk), body)
    # then
    error = assert_error(response, 404, "not_found")
    assert error["message"] == "Staff not found"
    b_staff.refresh_from_db()
    assert (b_staff.name, b_staff.status) == ("B Boss", "active")


def test_a_missing_id_looks_exactly_like_another_tenants_id(a_admin, b_staff):
    foreign = a_admin.get(f"/staff/{b_staff.pk}").json()
    missing = a_admin.get("/staff/999999").json()
    assert foreign["error"]["code"] == missing["error"]["code"] == "not_found"
    assert foreign["error"]["message"] == missing["error"]["message"]


def test_another_tenants_department_cannot_be_assigned(tenant, other_tenant, a_admin):
    b_department = DepartmentFactory(tenant=other_tenant, name="B dept")
    response = a_admin.post(
        "/staff", {"wecom_userid": "x1", "name": "X", "department_id": b_department.pk}
    )
    assert_error(response, 404, "not_found")
    assert not Staff.objects.for_tenant(tenant).filter(wecom_userid="x1").exists()


# --- data scopes -------------------------------------------------------------------------
def test_sales_sees_only_their_own_staff_row(tenant, admin_staff, api_as):
    # given
    sales = StaffFactory(tenant=tenant, roles=["sales"], name="Sales")
    colleague = StaffFactory(tenant=tenant, roles=["sales"], name="Colleague")
    api = api_as(tenant, ["staff:read"], staff=sales)
    # then
    assert ids(api.walk("/staff")) == [sales.pk]
    assert api.get(f"/staff/{sales.pk}").json()["name"] == "Sales"
    assert_error(api.get(f"/staff/{colleague.pk}"), 404, "not_found")
    assert_error(api.get(f"/staff/{admin_staff.pk}"), 404, "not_found")


def test_sales_session_sees_only_their_own_staff_row(tenant, sales_staff, admin_staff, session_api):
    api = session_api(sales_staff)
    assert ids(api.walk("/staff")) == [sales_staff.pk]
    assert_error(api.get(f"/staff/{admin_staff.pk}"), 404, "not_found")


def test_department_scope_sees_the_department_subtree(tenant, api_as):
    north = DepartmentFactory(tenant=tenant, name="North")
    shop = DepartmentFactory(tenant=tenant, name="North shop", parent=north)
    south = DepartmentFactory(tenant=tenant, name="South")
    lead = StaffFactory(tenant=tenant, roles=["service"], department=north)
    below = StaffFactory(tenant=tenant, department=shop)
    elsewhere = StaffFactory(tenant=tenant, department=south)
    api = api_as(tenant, ["staff:read"], staff=lead)
    assert ids(api.walk("/staff")) == [below.pk, lead.pk]
    assert_error(api.get(f"/staff/{elsewhere.pk}"), 404, "not_found")


# --- reading -----------------------------------------------------------------------------
def test_get_staff_returns_the_exact_row(tenant, api):
    department = DepartmentFactory(tenant=tenant, name="East")
    staff = StaffFactory(
        tenant=tenant,
        wecom_userid="zhang",
        name="张三",
        department=department,
        roles=["sales", "content"],
        login=True,
    )
    body = api.get(f"/staff/{staff.pk}").json()
    assert body == {
        "id": staff.pk,
        "wecom_userid": "zhang",
        "name": "张三",
        "department_id": department.pk,
        "status": "active",
        "roles": ["content", "sales"],
        "has_console_login": True,
        "departed_at": None,
        "created_at": body["created_at"],
    }


def test_list_filters(tenant, api):
    east = DepartmentFactory(tenant=tenant, name="East")
    ann = StaffFactory(tenant=tenant, wecom_userid="ann", name="Ann", department=east)
    bob = StaffFactory(tenant=tenant, wecom_userid="bob", name="Bobby")
    gone = StaffFactory(tenant=tenant, wecom_userid="carl", name="Carl")
    api.post(f"/staff/{gone.pk}/depart")
    assert ids(api.walk("/staff", status="departed")) == [gone.pk]
    assert ids(api.walk("/staff", status="active")) == [bob.pk, ann.pk]
    assert ids(api.walk("/staff", department_id=east.pk)) == [ann.pk]
    assert ids(api.walk("/staff", q="BOB")) == [bob.pk]
    assert ids(api.walk("/staff", q="car")) == [gone.pk]


def test_departments_are_listed(tenant, other_tenant, api):
    north = DepartmentFactory(tenant=tenant, name="North")
    DepartmentFactory(tenant=other_tenant, name="B only")
    assert api.walk("/departments") == [
        {"id": north.pk, "name": "North", "parent_id": None, "wecom_id": None}
    ]


# --- writing -----------------------------------------------------------------------------
def test_add_staff(tenant, admin_staff, a_admin):
    east = DepartmentFactory(tenant=tenant, name="East")
    # when
    response = a_admin.post(
        "/staff",
        {"wecom_userid": "li4", "name": "李四", "department_id": east.pk, "roles": ["operator"]},
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    staff = Staff.objects.for_tenant(tenant).get(wecom_userid="li4")
    assert body["id"] == staff.pk
    assert (body["name"], body["department_id"], body["roles"]) == ("李四", east.pk, ["operator"])
    event = Event.objects.for_tenant(tenant).get(type="staff.added", staff=staff)
    assert event.source == ("api" if a_admin.headers.get("Authorization") else "console")


def test_add_staff_defaults_to_the_sales_role(api):
    response = api.post("/staff", {"wecom_userid": "w5", "name": "Wang"})
    assert response.status_code == 201
    assert response.json()["roles"] == ["sales"]


def test_adding_a_duplicate_userid_is_409(tenant, api):
    StaffFactory(tenant=tenant, wecom_userid="dup")
    error = assert_error(api.post("/staff", {"wecom_userid": "dup", "name": "D"}), 409, "conflict")
    assert error["details"] == {"wecom_userid": "dup"}


def test_an_unknown_role_is_400(api):
    response = api.post("/staff", {"wecom_userid": "r1", "name": "R", "roles": ["wizard"]})
    error = assert_error(response, 400, "invalid")
    assert error["details"] == {"roles": ["wizard"]}


def test_a_bad_userid_is_400(api):
    response = api.post("/staff", {"wecom_userid": "has space", "name": "S"})
    assert_error(response, 400, "invalid")


def test_patch_changes_only_the_fields_sent(tenant, api):
    east = DepartmentFactory(tenant=tenant, name="East")
    staff = StaffFactory(tenant=tenant, name="Old", department=east, roles=["sales"])
    # when the name alone is sent
    body = api.patch(f"/staff/{staff.pk}", {"name": "New"}).json()
    assert (body["name"], body["department_id"], body["roles"]) == ("New", east.pk, ["sales"])
    # when roles and a null department are sent
    body = api.patch(
        f"/staff/{staff.pk}", {"roles": ["service", "sales"], "department_id": None}
    ).json()
    assert (body["name"], body["department_id"], body["roles"]) == (
        "New",
        None,
        ["sales", "service"],
    )
    assert Event.objects.for_tenant(tenant).filter(type="staff.updated", staff=staff).count() == 2


def test_patch_with_a_null_name_is_400(tenant, api):
    staff = StaffFactory(tenant=tenant, name="Keep")
    error = assert_error(api.patch(f"/staff/{staff.pk}", {"name": None}), 400, "invalid")
    assert error["details"] == {"field": "name"}
    staff.refresh_from_db()
    assert staff.name == "Keep"


def test_depart_marks_the_staff_departed_once(tenant, api):
    staff = StaffFactory(tenant=tenant, login=True)
    first = api.post(f"/staff/{staff.pk}/depart")
    again = api.post(f"/staff/{staff.pk}/depart")
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "departed"
    assert first.json()["departed_at"] == again.json()["departed_at"] is not None
    assert Event.objects.for_tenant(tenant).filter(type="staff.departed").count() == 1
    staff.user.refresh_from_db()
    assert staff.user.is_active is False


def test_you_cannot_depart_yourself(admin_staff, session_api):
    response = session_api(admin_staff).post(f"/staff/{admin_staff.pk}/depart")
    error = assert_error(response, 400, "invalid")
    assert error["message"] == "You cannot mark yourself as departed"


def test_writes_need_the_staff_write_scope(tenant, api_as):
    staff = StaffFactory(tenant=tenant, name="Same")
    api = api_as(tenant, ["staff:read"])
    assert_error(api.post("/staff", {"wecom_userid": "n", "name": "N"}), 403, "forbidden")
    assert_error(api.patch(f"/staff/{staff.pk}", {"name": "Other"}), 403, "forbidden")
    assert_error(api.post(f"/staff/{staff.pk}/depart"), 403, "forbidden")
    staff.refresh_from_db()
    assert (staff.name, staff.status) == ("Same", "active")
