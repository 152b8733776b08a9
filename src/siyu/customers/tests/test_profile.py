"""Profile services: phone numbers, attributes, custom fields, notes and follow-ups."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from siyu.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from siyu.core.models import AuditEntry, Event
from siyu.customers import profiles
from siyu.customers.models import Customer, CustomerNote, CustomField
from siyu.engagement.models import StaffTask
from siyu.tenancy.models import Staff
from siyu.tenancy.services import system_actor
from siyu.testing.factories import CustomerFactory, StaffFactory


@pytest.fixture
def system(tenant):
    return system_actor(tenant)


@pytest.fixture
def customer(tenant, sales_staff):
    return CustomerFactory(tenant=tenant, staff=sales_staff, name="王女士")


def stored(customer: Customer) -> Customer:
    return Customer.objects.for_tenant(customer.tenant_id).get(pk=customer.pk)


# --- phone numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("0086 13812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("(+86)138 1234 5678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),  # full-width digits typed on a phone
        ("+852 9123 4567", "+85291234567"),
        ("", ""),
        (None, ""),
    ],
)
def test_phone_numbers_are_normalised(raw, normalised):
    assert profiles.normalise_phone(raw) == normalised


@pytest.mark.parametrize("raw", ["12812345678", "1381234567", "010-12345678", "abc", "+86 123"])
def test_malformed_phone_numbers_are_refused(raw):
    with pytest.raises(InvalidInput) as refused:
        profiles.normalise_phone(raw)
    assert refused.value.code == "invalid_phone"


def test_the_phone_fingerprint_is_a_keyed_hmac_of_the_normalised_number():
    fingerprint = profiles.phone_hash_of("+86 138 1234 5678")
    assert fingerprint == profiles.phone_hash("13812345678")
    assert len(fingerprint) == 64
    import hashlib

    assert fingerprint != hashlib.sha256(b"13812345678").hexdigest()  # not a bare hash
    assert profiles.phone_hash("") == ""


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("13812345678", "138****5678"), ("+85291234567", "+85****4567"), ("", "")],
)
def test_phones_are_masked(phone, masked):
    assert profiles.mask_phone(phone) == masked


def test_the_phone_is_stored_encrypted_with_its_fingerprint(tenant, system, customer):
    # when
    profiles.update_profile(system, customer, phone="+86 138 1234 5678")
    # then
    row = stored(customer)
    assert (row.phone, row.phone_hash) == ("13812345678", profiles.phone_hash("13812345678"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT phone FROM customers_customer WHERE id = %s", [customer.pk])
        (raw,) = cursor.fetchone()
    assert "13812345678" not in raw and raw.startswith("gAAAA")  # Fernet ciphertext


def test_the_phone_is_masked_in_events_and_the_audit_log(tenant, system, customer):
    profiles.update_profile(system, customer, phone="13812345678", phone_verified=True)
    event = Event.objects.for_tenant(tenant).get(type=profiles.PROFILE_UPDATED)
    assert event.payload["changes"]["phone"] == ["", "138****5678"]
    audit = AuditEntry.objects.for_tenant(tenant).get(action=profiles.PROFILE_UPDATED)
    assert "13812345678" not in str(audit.changes)


def test_a_new_phone_number_is_unverified_until_said_otherwise(system, customer):
    profiles.update_profile(system, customer, phone="13812345678", phone_verified=True)
    assert stored(customer).phone_verified is True
    profiles.update_profile(system, customer, phone="13900000000")
    assert stored(customer).phone_verified is False


def test_customers_are_found_by_phone_without_decrypting(tenant, system, sales_staff):
    # given
    wanted = CustomerFactory(tenant=tenant, staff=sales_staff)
    other = CustomerFactory(tenant=tenant, staff=sales_staff)
    profiles.update_profile(system, wanted, phone="13812345678")
    profiles.update_profile(system, other, phone="13900000000")
    customers = Customer.objects.for_tenant(tenant)
    # then
    assert list(profiles.find_by_phone(customers, "+86 138 1234 5678")) == [wanted]
    assert list(profiles.find_by_phone(customers, "138123")) == []  # partial: nobody


@pytest.mark.parametrize(
    ("permission_holder", "shown"),
    [("admin_staff", "13812345678"), ("sales_staff", "138****5678")],
)
def test_the_phone_is_shown_in_full_only_with_the_permission(
    permission_holder, shown, request, actor_of, system, customer
):
    profiles.update_profile(system, customer, phone="13812345678")
    actor = actor_of(request.getfixturevalue(permission_holder))
    assert profiles.shown_phone(actor, stored(customer)) == shown


# --- profile attributes ---------------------------------------------------------------------------
def test_the_profile_is_updated_with_one_event(tenant, system, customer):
    # when
    profiles.update_profile(
        system,
        customer,
        birthday="1990-05-20",
        age_band="35-44",
        province=" 浙江 ",
        city="杭州",
        interests="咖啡, 烘焙；咖啡",
        display_name="王姐",
    )
    # then
    row = stored(customer)
    assert (row.birthday, row.age_band, row.province, row.city) == (
        date(1990, 5, 20),
        "35-44",
        "浙江",
        "杭州",
    )
    assert row.interests == ["咖啡", "烘焙"]
    assert profiles.display_name(row) == "王姐" and row.name == "王女士"
    (event,) = Event.objects.for_tenant(tenant).filter(type=profiles.PROFILE_UPDATED)
    assert event.customer_id == customer.pk
    assert sorted(event.payload["changes"]) == [
        "age_band",
        "birthday",
        "city",
        "display_name",
        "interests",
        "province",
    ]


def test_an_unchanged_profile_records_nothing(tenant, system, customer):
    profiles.update_profile(system, customer, city="杭州")
    profiles.update_profile(system, customer, city="杭州")
    assert Event.objects.for_tenant(tenant).filter(type=profiles.PROFILE_UPDATED).count() == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"birthday": "1990-13-01"}, "birthday"),
        ({"birthday": (timezone.localdate() + timedelta(days=1)).isoformat()}, "birthday"),
        ({"age_band": "20-30"}, "age_band"),
        ({"city": "x" * 33}, "city"),
        ({"interests": ["x" * 21]}, "interests"),
        ({"phone": "12345"}, "phone"),
        ({"phone_verified": "maybe"}, "phone_verified"),
        ({"nickname": "x"}, "unknown"),
    ],
)
def test_bad_profile_values_are_refused_with_their_field(values, field, system, customer):
    with pytest.raises(InvalidInput) as refused:
        profiles.update_profile(system, customer, **values)
    assert field in refused.value.details


def test_a_sales_staff_cannot_update_another_staffs_customer(
    tenant, actor_of, sales_staff, other_sales
):
    theirs = CustomerFactory(tenant=tenant, staff=other_sales)
    with pytest.raises(NotFound):
        profiles.update_profile(actor_of(sales_staff), theirs, city="杭州")


def test_another_tenants_customer_is_not_found(other_tenant, system):
    foreign = CustomerFactory(
        tenant=other_tenant, staff=StaffFactory(tenant=other_tenant, wecom_userid="b1")
    )
    with pytest.raises(NotFound):
        profiles.update_profile(system, foreign, city="杭州")


# --- custom fields
@pytest.fixture
def fields(system):
    return {
        "note": profiles.create_custom_field(system, key="note", label="备注", type="text"),
        "card_no": profiles.create_custom_field(
            system, key="card_no", label="会员卡号", type="number"
        ),
        "joined": profiles.create_custom_field(system, key="joined", label="入会日", type="date"),
        "skin": profiles.create_custom_field(
            system, key="skin", label="肤质", type="choice", choices=["干性", "油性"]
        ),
        "likes": profiles.create_custom_field(
            system,
            key="likes",
            label="偏好",
            type="multi_choice",
            choices="咖啡\n茶\n果汁",
        ),
    }


@pytest.mark.parametrize(
    ("key", "value", "stored_value"),
    [
        ("note", "  爱喝拿铁 ", "爱喝拿铁"),
        ("card_no", "1024", 1024),
        ("card_no", 12.5, 12.5),
        ("card_no", "3.0", 3),
        ("joined", "2026-01-31", "2026-01-31"),
        ("joined", date(2026, 2, 1), "2026-02-01"),
        ("skin", "油性", "油性"),
        ("likes", ["果汁", "咖啡", "咖啡"], ["咖啡", "果汁"]),
        ("likes", "茶;咖啡", ["咖啡", "茶"]),
    ],
)
def test_custom_values_are_stored_typed(key, value, stored_value, fields, system, customer):
    profiles.set_custom_values(system, customer, {key: value})
    assert stored(customer).custom[key] == stored_value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("card_no", "12a"),
        ("card_no", True),
        ("card_no", "nan"),
        ("joined", "31/01/2026"),
        ("joined", "2026-02-30"),
        ("skin", "中性"),
        ("skin", ["干性"]),
        ("likes", ["咖啡", "可乐"]),
        ("note", "x" * 501),
        ("note", ["a"]),
    ],
)
def test_custom_values_that_do_not_fit_their_type_are_refused(key, value, fields, system, customer):
    with pytest.raises(InvalidInput) as refused:
        profiles.set_custom_values(system, customer, {"note": "ok", key: value})
    assert f"custom.{key}" in refused.value.details
    assert "note" not in (stored(customer).custom or {})  # one bad value refuses them all


def test_unknown_and_inactive_custom_fields_are_refused(fields, system, customer):
    profiles.deactivate_custom_field(system, fields["skin"])
    with pytest.raises(InvalidInput) as refused:
        profiles.set_custom_values(system, customer, {"skin": "油性", "nope": 1})
    assert refused.value.details == {"unknown": ["nope", "skin"]}


def test_an_empty_value_clears_a_custom_field(fields, system, customer, tenant):
    profiles.set_custom_values(system, customer, {"skin": "油性", "card_no": 7})
    profiles.set_custom_values(system, customer, {"skin": "", "card_no": None})
    assert stored(customer).custom == {}
    changes = [
        event.payload["changes"]
        for event in Event.objects.for_tenant(tenant)
        .filter(type=profiles.PROFILE_UPDATED)
        .order_by("id")
    ]
    assert changes == [
        {"custom.skin": [None, "油性"], "custom.card_no": [None, 7]},
        {"custom.skin": ["油性", None], "custom.card_no": [7, None]},
    ]


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"key": "Skin"}, InvalidInput),
        ({"key": "_hidden"}, InvalidInput),
        ({"key": "1st"}, InvalidInput),
        ({"key": "skin", "type": "choice", "choices": []}, InvalidInput),
        ({"key": "skin", "type": "colour"}, InvalidInput),
        ({"key": "skin", "label": " "}, InvalidInput),
        ({"key": "taken"}, Conflict),
    ],
)
def test_bad_custom_field_definitions_are_refused(values, error, system):
    profiles.create_custom_field(system, key="taken", label="Taken")
    with pytest.raises(error):
        profiles.create_custom_field(system, **{"label": "肤质", **values})


def test_a_field_type_changes_only_while_no_customer_has_a_value(fields, system, customer):
    profiles.update_custom_field(system, fields["note"], type="number")
    profiles.set_custom_values(system, customer, {"card_no": 5})
    with pytest.raises(Conflict):
        profiles.update_custom_field(system, fields["card_no"], type="text")
    updated = profiles.update_custom_field(system, fields["card_no"], label="卡号", order=3)
    assert (updated.label, updated.order, updated.type) == ("卡号", 3, "number")


def test_custom_field_definitions_need_their_permission(tenant, actor_of, sales_staff):
    with pytest.raises(Forbidden):
        profiles.create_custom_field(actor_of(sales_staff), key="skin", label="肤质")
    assert not CustomField.objects.for_tenant(tenant).exists()


# --- notes and follow-ups ------------------------------------------------------------------------
def tasks_of(tenant):
    return list(StaffTask.objects.for_tenant(tenant).order_by("id"))


def test_a_note_is_recorded_on_the_timeline(tenant, actor_of, sales_staff, customer):
    # when
    note = profiles.add_note(actor_of(sales_staff), customer, content="喜欢新品")
    # then
    assert (note.author, note.kind, note.content) == (sales_staff, "note", "喜欢新品")
    event = Event.objects.for_tenant(tenant).get(type=profiles.NOTE_ADDED)
    assert (event.customer_id, event.payload["note_id"]) == (customer.pk, note.pk)
    assert tasks_of(tenant) == []


def test_a_follow_up_with_a_next_contact_gives_the_owner_a_task(
    tenant, actor_of, admin_staff, sales_staff, customer
):
    # given: an administrator writes a call on a sales staff's customer
    due = timezone.now() + timedelta(days=3)
    # when
    note = profiles.add_note(
        actor_of(admin_staff), customer, kind="call", content="回访", next_contact_at=due
    )
    # then
    (task,) = tasks_of(tenant)
    assert (task.staff, task.kind, task.due_at, task.customer) == (
        sales_staff,
        StaffTask.Kind.FOLLOW_UP,
        due,
        stored(customer),
    )
    assert task.source_key == f"note:{note.pk}"
    assert Event.objects.for_tenant(tenant).filter(type=profiles.FOLLOWED_UP).count() == 1


def test_the_follow_up_task_is_created_once(tenant, actor_of, sales_staff, customer):
    actor = actor_of(sales_staff)
    due = timezone.now() + timedelta(days=1)
    note = profiles.add_note(actor, customer, kind="chat", content="x", next_contact_at=due)
    # a retried scheduling of the same note (e.g. a re-run) finds the task
    profiles._schedule_follow_up(actor, note, customer, None)
    assert len(tasks_of(tenant)) == 1


def test_a_customer_without_an_owner_reminds_the_author(tenant, actor_of, admin_staff):
    orphan = CustomerFactory(tenant=tenant)
    due = timezone.now() + timedelta(hours=2)
    profiles.add_note(actor_of(admin_staff), orphan, content="x", next_contact_at=due)
    (task,) = tasks_of(tenant)
    assert task.staff == admin_staff


def test_moving_the_next_contact_moves_the_task_and_clearing_it_dismisses_it(
    tenant, actor_of, sales_staff, customer
):
    actor = actor_of(sales_staff)
    first = timezone.now() + timedelta(days=1)
    later = timezone.now() + timedelta(days=5)
    note = profiles.add_note(actor, customer, content="x", next_contact_at=first)
    # when
    profiles.update_note(actor, note, next_contact_at=later)
    # then
    (task,) = tasks_of(tenant)
    assert (task.due_at, task.status) == (later, "open")
    # when
    profiles.update_note(actor, note, next_contact_at=None)
    # then
    (task,) = tasks_of(tenant)
    assert task.status == "dismissed"


def test_a_next_contact_in_the_past_is_refused(actor_of, sales_staff, customer):
    with pytest.raises(InvalidInput) as refused:
        profiles.add_note(
            actor_of(sales_staff),
            customer,
            content="x",
            next_contact_at=timezone.now() - timedelta(minutes=1),
        )
    assert "next_contact_at" in refused.value.details


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"content": "  "}, "content"),
        ({"content": "x", "kind": "email"}, "kind"),
        ({"content": "x", "happened_at": "yesterday"}, "happened_at"),
    ],
)
def test_bad_notes_are_refused(values, field, actor_of, sales_staff, customer):
    with pytest.raises(InvalidInput) as refused:
        profiles.add_note(actor_of(sales_staff), customer, **values)
    assert field in refused.value.details


def test_only_the_author_or_a_manager_edits_or_deletes_a_note(
    tenant, actor_of, admin_staff, sales_staff
):
    # given: sales_staff's note on their customer; a colleague; sales_staff's direct leader
    colleague = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="colleague")
    leader = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="leader")
    # (the WeCom directory sync sets direct_leader; set it directly here)
    Staff.objects.for_tenant(tenant).filter(pk=sales_staff.pk).update(direct_leader=leader)
    customer = CustomerFactory(tenant=tenant, staff=sales_staff)
    note = profiles.add_note(actor_of(sales_staff), customer, content="original")
    note = CustomerNote.objects.for_tenant(tenant).select_related("author").get(pk=note.pk)
    # then: who may manage it
    assert profiles.may_manage_note(actor_of(sales_staff), note)
    assert profiles.may_manage_note(actor_of(leader), note)
    assert profiles.may_manage_note(actor_of(admin_staff), note)
    assert not profiles.may_manage_note(actor_of(colleague), note)
    # a colleague does not even see the customer's notes
    with pytest.raises(NotFound):
        profiles.update_note(actor_of(colleague), note, content="hijacked")
    # an administrator (tenant scope) edits and deletes
    profiles.update_note(actor_of(admin_staff), note, content="fixed")
    assert CustomerNote.objects.for_tenant(tenant).get(pk=note.pk).content == "fixed"
    profiles.delete_note(actor_of(admin_staff), note)
    assert not CustomerNote.objects.for_tenant(tenant).exists()
    assert Event.objects.for_tenant(tenant).filter(type=profiles.NOTE_DELETED).count() == 1


def test_a_shared_customers_other_staff_cannot_change_the_owners_note(
    tenant, actor_of, sales_staff, other_sales
):
    # given: other_sales owns the customer; sales_staff is a later friend
    customer = CustomerFactory(tenant=tenant, followed_by=[other_sales, sales_staff])
    note = profiles.add_note(actor_of(other_sales), customer, content="mine")
    # then
    with pytest.raises(NotFound):
        profiles.delete_note(actor_of(sales_staff), note)


def test_the_author_deletes_their_note_and_its_reminder_is_dismissed(
    tenant, actor_of, sales_staff, customer
):
    actor = actor_of(sales_staff)
    note = profiles.add_note(
        actor, customer, content="x", next_contact_at=timezone.now() + timedelta(days=1)
    )
    profiles.delete_note(actor, note)
    (task,) = tasks_of(tenant)
    assert task.status == "dismissed"
