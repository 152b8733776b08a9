"""Segment services: create / update / delete, previews and audiences within the data scope,
cached counts, static snapshots (in the request and as a job), size samples."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from siyu.core.errors import Conflict, InvalidInput, NotFound
from siyu.core.models import AuditEntry, BackgroundJob, Event
from siyu.segments import services
from siyu.segments.models import Segment, SegmentMember, SegmentSize
from siyu.segments.tests.support_segments import build_population, set_profile
from siyu.tenancy.services import actor_for_staff, system_actor
from siyu.testing.factories import CustomerFactory, StaffFactory

SHANGHAI = {"op": "and", "conditions": [{"field": "city", "operator": "contains", "value": "上海"}]}


@pytest.fixture
def people(tenant):
    return build_population(tenant)


@pytest.fixture
def boss(tenant):
    return system_actor(tenant, channel="console")


def names(people, customers) -> set[str]:
    return people.names(customers)


# --- create / update / delete ---------------------------------------------------------------------
def test_create_a_dynamic_segment_records_the_event_and_the_audit(people, boss, tenant):
    # when an operator defines a segment
    segment = services.create_segment(boss, name=" 上海客户 ", rules=SHANGHAI, description="d")
    # then it is stored with normalised rules, an event and an audit entry
    assert (segment.name, segment.kind, segment.description) == ("上海客户", "dynamic", "d")
    assert segment.rules == {
        "op": "and",
        "conditions": [{"field": "city", "operator": "contains", "value": "上海"}],
    }
    event = Event.objects.for_tenant(tenant).get(type="segment.created")
    assert event.payload == {
        "segment_id": segment.pk,
        "name": "上海客户",
        "kind": "dynamic",
        "rules": segment.rules,
    }
    assert AuditEntry.objects.for_tenant(tenant).filter(action="segment.created").count() == 1


def test_names_are_unique_per_tenant(people, boss, other_tenant):
    services.create_segment(boss, name="VIP", rules={})
    with pytest.raises(Conflict):
        services.create_segment(boss, name="VIP", rules={})
    # another brand may use the same name
    assert services.create_segment(system_actor(other_tenant), name="VIP", rules={}).pk


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"name": ""}, {"name": ""}),
        ({"name": "x" * 101}, {"name": "x" * 101}),
        ({"name": "ok", "kind": "frozen"}, {"kind": "frozen"}),
        ({"name": "ok", "description": "d" * 301}, {"description": 301}),
    ],
)
def test_invalid_segments_are_refused(people, boss, values, error):
    with pytest.raises(InvalidInput) as refused:
        services.create_segment(boss, **values)
    assert refused.value.details == error
    assert not Segment.objects.for_tenant(people.tenant).exists()


def test_invalid_rules_create_nothing(people, boss):
    with pytest.raises(InvalidInput) as refused:
        services.create_segment(boss, name="bad", rules={"conditions": [{"field": "x"}]})
    assert refused.value.details["path"] == "conditions[0].field"
    assert not Segment.objects.for_tenant(people.tenant).exists()


def test_update_changes_only_what_is_given_and_resets_the_count(people, boss, tenant):
    segment = services.create_segment(boss, name="A", rules=SHANGHAI)
    assert services.segment_count(boss, segment) == 2
    # when the rules change
    north = {"op": "and", "conditions": [{"field": "city", "operator": "eq", "value": "北京"}]}
    updated = services.update_segment(boss, segment, rules=north)
    # then the name stays, the cached count is gone until the next count, an event names it
    assert (updated.name, updated.cached_count) == ("A", None)
    assert services.segment_count(boss, updated) == 1
    changes = Event.objects.for_tenant(tenant).get(type="segment.updated").payload["changes"]
    assert list(changes) == ["rules"]
    # and an update that changes nothing records nothing
    services.update_segment(boss, updated, name="A")
    assert Event.objects.for_tenant(tenant).filter(type="segment.updated").count() == 1


def test_renaming_to_a_taken_name_is_a_conflict(people, boss):
    services.create_segment(boss, name="A", rules={})
    second = services.create_segment(boss, name="B", rules={})
    with pytest.raises(Conflict):
        services.update_segment(boss, second, name="A")


def test_delete_removes_members_and_sizes(people, boss, tenant):
    segment = services.create_segment(boss, name="S", rules=SHANGHAI, kind="static")
    assert SegmentMember.objects.for_tenant(tenant).count() == 2
    services.delete_segment(boss, segment)
    assert not Segment.objects.for_tenant(tenant).exists()
    assert not SegmentMember.objects.for_tenant(tenant).exists()
    assert not SegmentSize.objects.for_tenant(tenant).exists()
    assert Event.objects.for_tenant(tenant).get(type="segment.deleted").payload["name"] == "S"


# --- audiences and previews in the data scope -----------------------------------------------------
def test_a_sales_staffs_preview_counts_only_their_customers(people, boss):
    # given the sales staff s1 owns ann and cat; s2 owns bob
    rules = {"op": "and", "conditions": [{"field": "city", "operator": "is_not_empty"}]}
    s1 = actor_for_staff(people.s1)
    s2 = actor_for_staff(people.s2)
    # then each counts (and samples) only the customers they own
    assert services.preview(boss, rules).count == 3
    assert names(people, services.preview(s1, rules).sample) == {"ann"}
    assert services.preview(s2, rules).count == 1
    assert names(people, services.preview(s2, rules).sample) == {"bob"}


def test_a_department_lead_counts_their_departments_customers(people, tenant):
    from siyu.tenancy.services import create_role, update_staff
    from siyu.testing.factories import DepartmentFactory

    east = DepartmentFactory(tenant=tenant, name="East")
    update_staff(people.s2, by=system_actor(tenant), department=east)
    create_role(
        tenant,
        code="lead",
        name="Lead",
        permissions=["segments.*"],
        data_scope="department",
        by=system_actor(tenant),
    )
    lead = StaffFactory(tenant=tenant, roles=["lead"], department=east)
    segment = services.create_segment(system_actor(tenant), name="all", rules={})
    assert services.segment_count(actor_for_staff(lead), segment) == 1  # bob, owned by s2


def test_resolve_audience_takes_exactly_one_source(people, boss):
    with pytest.raises(InvalidInput):
        services.resolve_audience(boss)
    with pytest.raises(InvalidInput):
        services.resolve_audience(boss, rules={}, customer_ids=[1])


def test_resolve_audience_by_ids_keeps_only_visible_customers(people):
    s2 = actor_for_staff(people.s2)
    ids = [people.ann.pk, people.bob.pk, people.eve.pk, 999_999]
    assert names(people, services.resolve_audience(s2, customer_ids=ids)) == {"bob"}
    boss = system_actor(people.tenant)
    # merged-away records are never in an audience
    assert names(people, services.resolve_audience(boss, customer_ids=ids)) == {"ann", "bob"}


@pytest.mark.parametrize("bad", ["1,2", [True], ["x"], [0], list(range(1, 10_002))])
def test_resolve_audience_refuses_bad_ids(people, boss, bad):
    with pytest.raises(InvalidInput):
        services.resolve_audience(boss, customer_ids=bad)


def test_resolve_audience_of_a_segment_by_id_or_instance(people, boss):
    dynamic = services.create_segment(boss, name="D", rules=SHANGHAI)
    assert names(people, services.resolve_audience(boss, segment=dynamic.pk)) == {"ann", "dan"}
    assert names(people, services.resolve_audience(boss, segment=dynamic)) == {"ann", "dan"}


def test_another_tenants_segment_is_not_found(people, boss, other_tenant):
    foreign = services.create_segment(system_actor(other_tenant), name="X", rules={})
    with pytest.raises(NotFound):
        services.resolve_audience(boss, segment=foreign)
    with pytest.raises(NotFound):
        services.resolve_audience(boss, segment=foreign.pk)


def test_a_segment_whose_rules_no_longer_apply_says_so(people, boss, tenant):
    segment = services.create_segment(
        boss,
        name="T",
        rules={"conditions": [{"field": "tags", "operator": "has_any", "value": [people.vip.pk]}]},
    )
    people.vip.customer_links.all().delete()
    type(people.vip).objects.for_tenant(tenant).filter(pk=people.vip.pk).delete()
    with pytest.raises(InvalidInput) as refused:
        services.resolve_audience(boss, segment=segment)
    assert refused.value.code == "segment_rules_invalid"
    assert refused.value.details["path"] == "conditions[0].value"


# --- counts and sizes -----------------------------------------------------------------------------
def test_the_cached_count_is_used_until_it_is_stale(
    people, boss, tenant, django_assert_num_queries
):
    segment = services.create_segment(boss, name="C", rules=SHANGHAI)
    assert services.segment_count(boss, segment) == 2
    # given a new matching customer
    set_profile(CustomerFactory(tenant=tenant), city="上海")
    # then the fresh cached count answers without a query
    with django_assert_num_queries(0):
        assert services.segment_count(boss, segment) == 2
    # until it is older than the TTL
    Segment.objects.for_tenant(tenant).filter(pk=segment.pk).update(
        counted_at=timezone.now() - services.COUNT_TTL - timedelta(seconds=1)
    )
    segment.refresh_from_db()
    assert services.segment_count(boss, segment) == 3
    # and every count keeps today's size
    assert list(SegmentSize.objects.for_tenant(tenant).values_list("size", flat=True)) == [3]


def test_the_periodic_tasks_refresh_stale_counts_and_sample_sizes(people, boss, tenant):
    from siyu.segments.tasks import refresh_segment_counts, sample_segment_sizes

    segment = services.create_segment(boss, name="P", rules=SHANGHAI)
    assert segment.cached_count is None
    assert refresh_segment_counts.call_local() >= 1
    segment.refresh_from_db()
    assert segment.cached_count == 2
    set_profile(people.cat, city="上海")
    sample_segment_sizes.call_local()
    sample_segment_sizes.call_local()  # twice the same day: one row, updated
    assert list(
        SegmentSize.objects.for_tenant(tenant).filter(segment=segment).values_list("day", "size")
    ) == [(timezone.localdate(), 3)]


def test_size_history_is_oldest_first(people, boss, tenant):
    segment = services.create_segment(boss, name="H", rules={})
    today = timezone.localdate()
    for days, size in ((2, 10), (1, 12)):
        SegmentSize.objects.for_tenant(tenant).create(
            tenant=tenant, segment=segment, day=today - timedelta(days=days), size=size
        )
    services.store_count(segment)
    assert [(row.day, row.size) for row in services.size_history(segment)] == [
        (today - timedelta(days=2), 10),
        (today - timedelta(days=1), 12),
        (today, 4),
    ]


# --- static snapshots -----------------------------------------------------------------------------
def test_a_static_segment_keeps_its_snapshot_until_rebuilt(people, boss, tenant):
    # given a static segment of the Shanghai customers
    segment = services.create_segment(boss, name="S", rules=SHANGHAI, kind="static")
    assert names(people, services.resolve_audience(boss, segment=segment)) == {"ann", "dan"}
    assert segment.snapshot_at is not None and segment.cached_count == 2
    # when the customers change
    set_profile(people.cat, city="上海")
    set_profile(people.dan, city="杭州")
    # then its members do not, until it is rebuilt
    assert names(people, services.resolve_audience(boss, segment=segment)) == {"ann", "dan"}
    assert services.rebuild_snapshot(boss, segment) is None
    assert names(people, services.resolve_audience(boss, segment=segment)) == {"ann", "cat"}
    taken = Event.objects.for_tenant(tenant).filter(type="segment.snapshot_taken").order_by("id")
    assert [e.payload["added"] for e in taken] == [2, 1]
    assert [e.payload["removed"] for e in taken] == [0, 1]


def test_a_static_segments_members_are_narrowed_to_the_viewer(people, boss):
    segment = services.create_segment(boss, name="S", rules={}, kind="static")
    s1 = actor_for_staff(people.s1)
    assert names(people, services.resolve_audience(s1, segment=segment)) == {"ann", "cat"}
    assert services.segment_count(s1, segment) == 2
    assert services.segment_count(boss, segment) == 4


def test_large_tenants_rebuild_snapshots_as_a_job_with_progress(
    people, boss, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "SYNC_SNAPSHOT_LIMIT", 1)
    with django_capture_on_commit_callbacks(execute=True):
        segment = services.create_segment(boss, name="Big", rules=SHANGHAI, kind="static")
    job = BackgroundJob.objects.for_tenant(tenant).get(kind="segments.snapshot")
    assert (job.status, job.done, job.total) == ("succeeded", job.total, job.total)
    assert job.total >= 1
    assert job.result == {"members": 2, "added": 2, "removed": 0}
    assert names(people, services.resolve_audience(boss, segment=segment)) == {"ann", "dan"}


def test_only_static_segments_are_rebuilt(people, boss):
    segment = services.create_segment(boss, name="D", rules={})
    with pytest.raises(InvalidInput):
        services.rebuild_snapshot(boss, segment)


def test_turning_a_static_segment_dynamic_drops_its_members(people, boss, tenant):
    segment = services.create_segment(boss, name="S", rules=SHANGHAI, kind="static")
    services.update_segment(boss, segment, kind="dynamic")
    assert not SegmentMember.objects.for_tenant(tenant).exists()
    segment.refresh_from_db()
    assert segment.snapshot_at is None


@pytest.mark.parametrize(
    ("sample_size", "queries", "sampled"),
    [(0, 1, 0), (1, 2, 1), (4, 2, 4), (5, 1, 4), (10, 1, 4)],
)
def test_a_preview_counts_with_its_sample_when_that_holds_everyone(
    people, boss, django_assert_num_queries, sample_size, queries, sampled
):
    # given a rule (no conditions) that matches the 4 customers
    # then a sample smaller than the set needs a count; one that holds it all is the count
    with django_assert_num_queries(queries):
        result = services.preview(boss, {}, sample_size=sample_size)
    assert (result.count, len(result.sample)) == (4, sampled)
