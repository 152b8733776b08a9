"""Bulk tagging: a background job over ids, a segment or rules, in the starter's data scope,
chunked, idempotent when run again, mirrored to WeCom per friendship."""

from __future__ import annotations

import pytest

from siyu.core.errors import InvalidInput, NotFound
from siyu.core.models import BackgroundJob, Event
from siyu.customers import services, tagging
from siyu.customers.models import Customer, CustomerTag
from siyu.customers.tests import support_tags
from siyu.customers.tests.support_tags import carried, customer, tag_named, wecom_marks
from siyu.segments import services as segments
from siyu.tenancy.services import actor_for_staff, system_actor
from siyu.testing.factories import CustomerFactory, StaffFactory
from siyu.wecom.sync import sync_tenant

brand = support_tags.brand
control = support_tags.control
emulator = support_tags.emulator
wecom_cache = support_tags.wecom_cache


@pytest.fixture
def shop(tenant):
    """Two sales staff with customers, a local tag group and a WeCom-style tag group."""
    actor = system_actor(tenant, channel="console")
    mei = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="mei")
    lan = StaffFactory(tenant=tenant, roles=["sales"], wecom_userid="lan")
    theirs = {
        staff.wecom_userid: [
            CustomerFactory(
                tenant=tenant, staff=staff, external_userid=f"wm{staff.wecom_userid}{n}"
            )
            for n in range(3)
        ]
        for staff in (mei, lan)
    }
    tagging.create_tag_group(actor, name="活动", tags=["双十一", "618"], local=True)
    return {"actor": actor, "mei": mei, "lan": lan, "customers": theirs}


def run(actor, django_capture_on_commit_callbacks, **arguments) -> BackgroundJob:
    """Start a bulk job and run it to the end (tasks run in-process in tests)."""
    with django_capture_on_commit_callbacks(execute=True):
        job = tagging.start_bulk_tagging(actor, **arguments)
    job.refresh_from_db()
    return job


def ids(customers) -> list[int]:
    return [c.pk for c in customers]


def test_a_bulk_job_tags_and_untags_explicit_customers(
    tenant, shop, django_capture_on_commit_callbacks
):
    # given
    everyone = shop["customers"]["mei"] + shop["customers"]["lan"]
    promo, summer = tag_named(tenant, "双十一"), tag_named(tenant, "618")
    tagging.set_customer_tags(shop["actor"], everyone[0], add=[summer])
    # when
    job = run(
        shop["actor"],
        django_capture_on_commit_callbacks,
        add=[promo.pk],
        remove=[summer.pk],
        customer_ids=ids(everyone),
    )
    # then
    assert job.status == BackgroundJob.Status.SUCCEEDED, job.error
    assert (job.done, job.total) == (6, 6)
    assert job.result["tagged"] == 6 and job.result["untagged"] == 1
    assert all(carried(tenant, c) == {"双十一"} for c in everyone)
    tagged = Event.objects.for_tenant(tenant).filter(type="customer.tagged", payload__via="bulk")
    assert tagged.count() == 6 and tagged.first().payload["job_id"] == job.pk


def test_running_the_same_bulk_job_again_changes_nothing(
    tenant, shop, django_capture_on_commit_callbacks
):
    everyone = ids(shop["customers"]["mei"] + shop["customers"]["lan"])
    promo = tag_named(tenant, "双十一").pk
    run(shop["actor"], django_capture_on_commit_callbacks, add=[promo], customer_ids=everyone)
    events_before = Event.objects.for_tenant(tenant).count()
    # when
    again = run(
        shop["actor"], django_capture_on_commit_callbacks, add=[promo], customer_ids=everyone
    )
    # then
    assert again.status == BackgroundJob.Status.SUCCEEDED
    assert (again.result["tagged"], again.result["untagged"]) == (0, 0)
    assert Event.objects.for_tenant(tenant).count() == events_before
    assert CustomerTag.objects.for_tenant(tenant).count() == 6


def test_a_sales_staff_tags_only_their_own_customers(
    tenant, shop, django_capture_on_commit_callbacks
):
    # given a sales staff asking for everyone
    mei = actor_for_staff(shop["mei"])
    everyone = shop["customers"]["mei"] + shop["customers"]["lan"]
    # when
    job = run(
        mei,
        django_capture_on_commit_callbacks,
        add=[tag_named(tenant, "双十一").pk],
        customer_ids=ids(everyone),
    )
    # then only their three customers are tagged; the others are left out
    assert job.status == BackgroundJob.Status.SUCCEEDED
    assert job.result["tagged"] == 3 and job.result["skipped"] == 3
    assert [carried(tenant, c) for c in shop["customers"]["mei"]] == [{"双十一"}] * 3
    assert [carried(tenant, c) for c in shop["customers"]["lan"]] == [set()] * 3


def test_a_segment_or_rules_choose_the_customers(tenant, shop, django_capture_on_commit_callbacks):
    # given customers in Shanghai, one of each staff
    shanghai = [shop["customers"]["mei"][0], shop["customers"]["lan"][1]]
    Customer.objects.for_tenant(tenant).filter(pk__in=ids(shanghai)).update(city="上海")
    rules = {"op": "and", "conditions": [{"field": "city", "operator": "eq", "value": "上海"}]}
    segment = segments.create_segment(shop["actor"], name="上海客户", rules=rules)
    # when a segment and when ad-hoc rules are tagged
    by_segment = run(
        shop["actor"],
        django_capture_on_commit_callbacks,
        add=[tag_named(tenant, "双十一").pk],
        segment=segment.pk,
    )
    by_rules = run(
        actor_for_staff(shop["lan"]),
        django_capture_on_commit_callbacks,
        add=[tag_named(tenant, "618").pk],
        rules=rules,
    )
    # then
    assert by_segment.result["tagged"] == 2 and by_rules.result["tagged"] == 1
    assert carried(tenant, shanghai[0]) == {"双十一"}
    assert carried(tenant, shanghai[1]) == {"双十一", "618"}


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"add": [], "remove": [], "customer_ids": [1]}, InvalidInput),
        ({"add": ["promo"], "remove": ["promo"], "customer_ids": [1]}, InvalidInput),
        ({"add": [999999], "customer_ids": [1]}, NotFound),
        ({"add": ["promo"]}, InvalidInput),
        ({"add": ["promo"], "customer_ids": [1], "rules": {}}, InvalidInput),
        ({"add": ["promo"], "customer_ids": []}, InvalidInput),
        ({"add": ["promo"], "customer_ids": ["x"]}, InvalidInput),
        ({"add": ["promo"], "segment": 999999}, NotFound),
        ({"add": ["promo"], "rules": {"op": "xor", "conditions": []}}, InvalidInput),
    ],
)
def test_bad_bulk_requests_are_refused_before_any_job(tenant, shop, arguments, error):
    promo = tag_named(tenant, "双十一").pk
    for key in ("add", "remove"):
        arguments[key] = [promo if value == "promo" else value for value in arguments.get(key, [])]
    with pytest.raises(error):
        tagging.start_bulk_tagging(shop["actor"], **arguments)
    assert not BackgroundJob.objects.for_tenant(tenant).exists()


def test_a_tag_deleted_while_the_job_waits_is_left_out(
    tenant, shop, django_capture_on_commit_callbacks
):
    promo = tag_named(tenant, "双十一")
    job = tagging.start_bulk_tagging(
        shop["actor"], add=[promo.pk], customer_ids=ids(shop["customers"]["mei"])
    )  # queued: the on-commit task has not run
    tagging.delete_tag(shop["actor"], promo)
    from siyu.core.jobs import execute_job

    job = execute_job(tenant.pk, job.pk)
    assert job.status == BackgroundJob.Status.SUCCEEDED
    assert job.result["tagged"] == 0 and job.result["tags_gone"] == [promo.pk]


def test_bulk_tagging_marks_each_friendship_in_wecom(
    brand, emulator, control, django_capture_on_commit_callbacks
):
    # given customers with one or two friendships, synced from WeCom
    control.tag_change("create", group_name="等级", tags=["高"])
    control.bulk_customers(
        [
            {"external_userid": "wmb1", "follows": [{"userid": "lili"}, {"userid": "wang"}]},
            {"external_userid": "wmb2", "follows": [{"userid": "zhao"}]},
        ]
    )
    sync_tenant(brand, full=True)
    high = tag_named(brand, "高")
    actor = system_actor(brand)
    chosen = [customer(brand, "wmb1").pk, customer(brand, "wmb2").pk]
    # when
    job = run(actor, django_capture_on_commit_callbacks, add=[high.pk], customer_ids=chosen)
    # then
    assert job.result["mirrors_queued"] == 3
    assert wecom_marks(emulator, "wmb1") == {
        "lili": {high.wecom_tag_id},
        "wang": {high.wecom_tag_id},
    }
    assert wecom_marks(emulator, "wmb2") == {"zhao": {high.wecom_tag_id}}
    # and run again, nothing more is sent
    again = run(actor, django_capture_on_commit_callbacks, add=[high.pk], customer_ids=chosen)
    assert again.result["mirrors_queued"] == 0


def test_links_implied_by_wecom_tags_count_as_carried_for_bulk_untagging(
    tenant, shop, django_capture_on_commit_callbacks
):
    # given a customer whose friendship carries a WeCom tag (as a sync writes it)
    services.sync_corp_tags(
        tenant, [{"group_id": "g1", "group_name": "等级", "tag": [{"id": "t1", "name": "高"}]}]
    )
    someone = shop["customers"]["mei"][0]
    services.set_follow_tags(tenant, someone.follows.get(), ["t1"])
    assert carried(tenant, someone) == {"高"}
    # when it is untagged in bulk
    job = run(
        shop["actor"],
        django_capture_on_commit_callbacks,
        remove=[tag_named(tenant, "高").pk],
        customer_ids=[someone.pk],
    )
    # then the customer no longer carries it (the WeCom side is left to the mirror task,
    # which cannot run here: the tenant has no WeCom secret)
    assert job.result["untagged"] == 1 and job.result["mirrors_queued"] == 1
    assert carried(tenant, someone) == set()
