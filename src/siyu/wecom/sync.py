"""Full and incremental reconcile of a tenant's data with WeCom (``siyu wecom sync``).

Callbacks keep Siyu in step with WeCom change by change; a sync reads WeCom's current state
and makes Siyu match it, for a new tenant (the first import), after missed callbacks, or
nightly to be sure. In order:

1. **departments** — ``department/list`` with the self-built app's secret (the
   customer-contact secret may not read the directory); without an app secret this stage
   and the directory part of the next are skipped, with a warning in the report;
2. **staff** — ``user/list`` of the visible top departments (with sub-departments), or the
   customer-contact member list (``get_follow_user_list``) without an app secret. A *full*
   sync marks staff WeCom no longer lists as departed, and only when the whole directory
   was read (the corp's root department visible, every listing answered);
3. **tags** — the corp tag library (``get_corp_tag_list``);
4. **customers and follows** — ``batch/get_by_user`` over every active staff, 100 userids a
   call, walking ``next_cursor``; one customer followed by several staff is one
   ``Customer`` with one ``Follow`` each. A full sync ends the follows Siyu has and WeCom no
   longer lists (``remove_follow(by="staff")``), only for staff whose listing completed;
5. **groups** — ``groupchat/list`` (all statuses), then ``groupchat/get`` per group with the
   member names; a full sync dismisses the groups WeCom no longer lists.

Writes go through the owning domains' services, so events and idempotency are theirs. A
page of WeCom data (at most 100 friendships) is first compared with what Siyu holds and
only the differences are written, a page in one transaction: new customers and friendships
in a few bulk statements (``create_customers``, ``add_follows``: what makes a first import
of 10 000 customers take seconds, not minutes), changed ones one by one (``upsert_customer``,
``upsert_follow``). A sync over unchanged data writes nothing and records no event. Every
write passes the time its data was read as ``seen_at``, so data read before a newer callback
was applied never overwrites it.

A full and an incremental sync read the same; only a full sync deletes (departures, ended
follows, dismissed groups), because a deletion inferred from a partial read is wrong.

Progress is kept in a ``SyncRun`` row (at most every half second) for the console, and
given to an optional ``progress`` callback (the CLI's progress bar). Two syncs of one tenant
never run at once (a cache lock, backed by the ``SyncRun`` heartbeat).
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import caches
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from siyu.community import services as community
from siyu.community.models import Group
from siyu.core.audit import record_audit
from siyu.core.errors import Conflict, ServiceError
from siyu.core.tasks import on_commit_task
from siyu.customers import services as customers
from siyu.customers.models import Customer, Follow, FollowTag, Tag
from siyu.tenancy import services as tenancy
from siyu.tenancy.actor import Actor
from siyu.tenancy.models import Department, Staff, Tenant
from siyu.wecom.client import MAX_BATCH_LIMIT, MAX_BATCH_USERIDS, WeComClient, client_for
from siyu.wecom.errors import (
    WeComBusy,
    WeComError,
    WeComNotFound,
    WeComRateLimited,
    WeComUnavailable,
)
from siyu.wecom.models import SyncRun

logger = logging.getLogger(__name__)

STAGES = ("departments", "staff", "tags", "customers", "groups")
STAGE_NAMES = {
    "departments": gettext_lazy("departments"),
    "staff": gettext_lazy("staff"),
    "tags": gettext_lazy("tags"),
    "customers": gettext_lazy("customers and friendships"),
    "groups": gettext_lazy("groups"),
    "done": gettext_lazy("done"),
}
# Share of the overall progress bar each stage takes (customers dominate every real corp).
STAGE_WEIGHTS = {"departments": 2, "staff": 6, "tags": 2, "customers": 70, "groups": 20}
PROGRESS_INTERVAL = 0.5  # seconds between two SyncRun updates
LOCK_TTL = 30 * 60  # seconds; refreshed while the sync makes progress
HEARTBEAT_STALE = timedelta(minutes=15)  # a "running" SyncRun quiet for this long was cut off
GROUP_BATCH = 20  # groups written per transaction
REMOVAL_BATCH = 100  # ended follows written per transaction
CHAT_GONE_ERRCODES = frozenset({86003, 40050})  # chat id unknown / group dismissed
TRANSIENT_ERRORS = (WeComBusy, WeComRateLimited, WeComUnavailable)
COUNTERS = (
    "departments",
    "staff",
    "staff_created",
    "staff_departed",
    "tags",
    "customers",
    "customers_created",
    "customers_updated",
    "follows",
    "follows_created",
    "follows_updated",
    "follows_removed",
    "customer_tags_linked",
    "groups",
    "groups_created",
    "groups_updated",
    "groups_dismissed",
    "members",
    "calls",
)


class SyncAlreadyRunning(Conflict):
    """Another sync of the same tenant is running (two would fight over the same rows)."""

    code = "sync_running"


@dataclass(frozen=True)
class SyncProgress:
    """A look at a running sync: what the ``progress`` callback of ``sync_tenant`` gets."""

    tenant: str  # slug
    kind: str  # "full" | "incremental"
    stage: str  # one of STAGES, then "done"
    percent: float  # overall, 0 - 100
    counters: dict[str, int]
    stage_done: bool = False  # the stage just finished (``counters`` holds its totals)
    message: str = ""  # at the end of a stage: what it read and changed, in words


@dataclass
class SyncReport:
    """What a sync read and changed."""

    tenant: str
    kind: str
    run_id: int | None
    started_at: datetime
    finished_at: datetime | None = None
    counters: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    incomplete_staff: list[str] = field(default_factory=list)  # userids not fully read

    @property
    def seconds(self) -> float:
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


def summary(stage: str, counters: dict[str, int]) -> str:
    """A stage's counts in words (the CLI's line per stage)."""
    lines = {
        "departments": _("%(departments)d departments"),
        "staff": _("%(staff)d staff (%(staff_created)d new, %(staff_departed)d departed)"),
        "tags": _("%(tags)d tags"),
        "customers": _(
            "%(customers)d customers (%(customers_created)d new, %(customers_updated)d changed), "
            "%(follows)d friendships (%(follows_created)d new, %(follows_updated)d changed, "
            "%(follows_removed)d ended)"
        ),
        "groups": _(
            "%(groups)d groups (%(groups_created)d new, %(groups_updated)d changed, "
            "%(groups_dismissed)d dismissed), %(members)d members"
        ),
    }
    return lines[stage] % counters if stage in lines else ""


# --- what WeCom sends, the way the services store it ---------------------------------------
def _text(value: Any, length: int) -> str:
    return ("" if value is None else str(value)).strip()[:length]


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _profile(contact: dict[str, Any]) -> dict[str, Any]:
    """``upsert_customer``'s arguments from an ``external_contact``."""
    return {
        "external_userid": str(contact.get("external_userid") or ""),
        "name": contact.get("name") or "",
        "avatar": contact.get("avatar") or "",
        "type": contact.get("type", 1),
        "gender": contact.get("gender", 0),
        "unionid": contact.get("unionid") or "",
        "corp_name": contact.get("corp_name") or "",
        "corp_full_name": contact.get("corp_full_name") or "",
        "position": contact.get("position") or "",
    }


def _profile_unchanged(customer: Customer, profile: dict[str, Any]) -> bool:
    gender = _int(profile["gender"], -1)
    if gender not in Customer.Gender.values:
        gender = Customer.Gender.UNKNOWN
    return (
        customer.name == _text(profile["name"], 128)
        and customer.avatar == _text(profile["avatar"], 512)
        and customer.type == _int(profile["type"], -1)
        and customer.gender == gender
        and customer.unionid == _text(profile["unionid"], 64)
        and customer.corp_name == _text(profile["corp_name"], 128)
        and customer.corp_full_name == _text(profile["corp_full_name"], 255)
        and customer.position == _text(profile["position"], 128)
    )


def _follow_fields(info: dict[str, Any], seen_at: datetime) -> dict[str, Any]:
    """``upsert_follow``'s arguments from a ``follow_info`` of ``batch/get_by_user``."""
    mobiles = info.get("remark_mobiles") or ()
    if isinstance(mobiles, str):
        mobiles = [mobiles]
    createtime = _int(info.get("createtime"))
    return {
        "added_at": datetime.fromtimestamp(createtime, tz=UTC) if createtime > 0 else seen_at,
        "remark": info.get("remark") or "",
        "description": info.get("description") or "",
        "remark_mobiles": [str(m).strip() for m in mobiles if str(m).strip()],
        "remark_corp_name": info.get("remark_corp_name") or "",
        "add_way": _int(info.get("add_way")),
        "state": info.get("state") or "",
        "oper_userid": info.get("oper_userid") or "",
        "tag_ids": [str(t).strip() for t in info.get("tag_id") or () if str(t).strip()],
    }


def _follow_unchanged(
    follow: Follow, fields: dict[str, Any], tags_now: set[str], known_tags: set[str]
) -> bool:
    return (
        follow.is_active
        and follow.added_at == fields["added_at"]
        and follow.remark == _text(fields["remark"], 128)
        and follow.description == _text(fields["description"], 255)
        and list(follow.remark_mobiles or []) == fields["remark_mobiles"]
        and follow.remark_corp_name == _text(fields["remark_corp_name"], 128)
        and follow.add_way == fields["add_way"]
        and follow.state == _text(fields["state"], 30)
        and follow.oper_userid == _text(fields["oper_userid"], 64)
        # tags not synced yet cannot be attached: they do not count as a difference
        and tags_now == {t for t in fields["tag_ids"] if t in known_tags}
    )


def _group_unchanged(group: Group, chat: dict[str, Any]) -> bool:
    admins = [
        _text(a.get("userid") if isinstance(a, dict) else a, 64)
        for a in chat.get("admin_list") or ()
    ]
    version = _text(chat.get("member_version"), 64)
    created = _int(chat.get("create_time"))
    return (
        group.status != Group.Status.DISMISSED
        and bool(version)
        and group.member_version == version
        and group.name == _text(chat.get("name"), 255)
        and group.owner_userid == _text(chat.get("owner"), 64)
        and group.notice == _text(chat.get("notice"), 10_000)
        and list(group.admin_userids or []) == list(dict.fromkeys(a for a in admins if a))
        and (
            group.created_at_wecom == datetime.fromtimestamp(created, tz=UTC)
            if created
            else group.created_at_wecom is None
        )
    )


def _parents_first(departments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Departments ordered so that each comes after its parent (upserts link parents)."""
    by_id = {_int(d.get("id")): d for d in departments if _int(d.get("id"))}
    children: dict[int, list[int]] = {}
    roots = []
    for dept_id, dept in by_id.items():
        parent = _int(dept.get("parentid"))
        if parent in by_id and parent != dept_id:
            children.setdefault(parent, []).append(dept_id)
        else:
            roots.append(dept_id)
    ordered, frontier, placed = [], sorted(roots), set()
    while frontier:
        dept_id = frontier.pop(0)
        if dept_id in placed:
            continue
        placed.add(dept_id)
        ordered.append(by_id[dept_id])
        frontier.extend(sorted(children.get(dept_id, ())))
    ordered += [d for i, d in by_id.items() if i not in placed]  # a cycle: as they come
    return ordered


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_chat_gone(error: WeComError) -> bool:
    return isinstance(error, WeComNotFound) or error.errcode in CHAT_GONE_ERRCODES


# --- one tenant at a time -------------------------------------------------------------------
def _lock_key(tenant: Tenant) -> str:
    return f"siyu:wecom:sync:{tenant.pk}"


def running_run(tenant: Tenant) -> SyncRun | None:
    """The tenant's sync in progress (a "running" row with a recent heartbeat), if any."""
    fresh = timezone.now() - HEARTBEAT_STALE
    return (
        SyncRun.objects.for_tenant(tenant)
        .filter(status=SyncRun.Status.RUNNING, updated_at__gte=fresh)
        .first()
    )


@contextmanager
def _tenant_lock(tenant: Tenant) -> Iterator[Callable[[], None]]:
    """Hold the tenant's sync lock; yields a function that extends it (call it regularly)."""
    cache = caches["default"]
    key, owner = _lock_key(tenant), uuid.uuid4().hex
    busy = _("A WeCom sync of %(tenant)s is already running; try again when it has finished.")
    if not cache.add(key, owner, timeout=LOCK_TTL):
        raise SyncAlreadyRunning(busy % {"tenant": tenant.name}, details={"tenant": tenant.slug})
    try:
        if running_run(tenant) is not None:  # the lock was lost (cache cleared, other cache)
            raise SyncAlreadyRunning(
                busy % {"tenant": tenant.name}, details={"tenant": tenant.slug}
            )
        yield lambda: cache.touch(key, LOCK_TTL)
    finally:
        if cache.get(key) == owner:
            cache.delete(key)


def is_configured(tenant: Tenant) -> bool:
    """Whether the tenant has what a sync needs: a corp id and a customer-contact secret."""
    return bool(
        tenant.is_active
        and (tenant.wecom_corp_id or "").strip()
        and (tenant.wecom_contact_secret or "").strip()
    )


def has_app_secret(tenant: Tenant) -> bool:
    return bool((tenant.wecom_agent_secret or "").strip() and (tenant.wecom_agent_id or "").strip())


def configured_tenants() -> list[Tenant]:
    """Active tenants with a corp id and a customer-contact secret (the ones to sync)."""
    tenants = Tenant.objects.filter(is_active=True).exclude(wecom_corp_id="").order_by("id")
    return [tenant for tenant in tenants if is_configured(tenant)]


# --- the sync ---------------------------------------------------------------------------------
class _Sync:
    def __init__(
        self,
        tenant: Tenant,
        *,
        full: bool,
        contact: WeComClient,
        directory: WeComClient | None,
        progress: Callable[[SyncProgress], None] | None,
        trigger: str,
        refresh_lock: Callable[[], None],
    ) -> None:
        self.tenant = tenant
        self.full = full
        self.kind = SyncRun.Kind.FULL if full else SyncRun.Kind.INCREMENTAL
        self.contact = contact
        self.directory = directory
        self.on_progress = progress
        self.refresh_lock = refresh_lock
        self.actor: Actor = tenancy.system_actor(tenant, channel="wecom")
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.warnings: list[str] = []
        self.incomplete: list[str] = []
        self.stage = STAGES[0]
        self.fraction = 0.0
        self.last_flush = 0.0
        self.staff: dict[str, Staff] = {}  # active staff by userid
        self.known_tags: set[str] = set()
        self.customer_ids: dict[str, int] = {}  # external_userid -> id, profile done this run
        self.expected_follows = 0  # active follows before the customers stage (for progress)
        self.pages = 0
        self.run = SyncRun.objects.for_tenant(tenant).create(
            tenant=tenant,
            kind=self.kind,
            trigger=trigger,
            stage=self.stage,
            counters=dict(self.counters),
        )

    # -- bookkeeping ------------------------------------------------------------------------
    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.counters["calls"] += 1
        return method(*args, **kwargs)

    def warn(self, message: str) -> None:
        logger.warning("WeCom sync of %s: %s", self.tenant.slug, message)
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def percent(self) -> float:
        total = sum(STAGE_WEIGHTS.values())
        if self.stage == "done":
            return 100.0
        done = sum(STAGE_WEIGHTS[s] for s in STAGES[: STAGES.index(self.stage)])
        current = STAGE_WEIGHTS[self.stage] * min(max(self.fraction, 0.0), 1.0)
        return round(100.0 * (done + current) / total, 1)

    def begin(self, stage: str) -> None:
        self.stage, self.fraction = stage, 0.0
        self.report(force=True)

    def end(self) -> None:
        self.fraction = 1.0
        self.report(force=True, stage_done=True, message=summary(self.stage, self.counters))

    def advance(self, fraction: float) -> None:
        self.fraction = fraction
        self.report()

    def report(self, *, force: bool = False, stage_done: bool = False, message: str = "") -> None:
        """Tell the ``progress`` callback; update the SyncRun (at most every half second)."""
        self.notify(stage_done=stage_done, message=message)
        if force or time.monotonic() - self.last_flush >= PROGRESS_INTERVAL:
            self.flush()

    def notify(self, *, stage_done: bool = False, message: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(
                SyncProgress(
                    tenant=self.tenant.slug,
                    kind=self.kind,
                    stage=self.stage,
                    percent=self.percent,
                    counters=dict(self.counters),
                    stage_done=stage_done,
                    message=message,
                )
            )

    def flush(self, **extra: Any) -> None:
        self.last_flush = time.monotonic()
        SyncRun.objects.for_tenant(self.tenant).filter(pk=self.run.pk).update(
            stage=self.stage,
            progress=self.percent,
            counters=dict(self.counters),
            warnings=list(self.warnings),
            updated_at=timezone.now(),
            **extra,
        )
        self.refresh_lock()

    def finish(self, error: BaseException | None = None) -> SyncReport:
        finished = timezone.now()
        if error is None:
            self.stage = "done"
        self.flush(
            status=SyncRun.Status.FAILED if error else SyncRun.Status.SUCCEEDED,
            error=_describe(error) if error else "",
            finished_at=finished,
        )
        if error is None:
            self.notify(stage_done=True)
        return SyncReport(
            tenant=self.tenant.slug,
            kind=self.kind,
            run_id=self.run.pk,
            started_at=self.run.started_at,
            finished_at=finished,
            counters=dict(self.counters),
            warnings=list(self.warnings),
            incomplete_staff=list(self.incomplete),
        )

    # -- the stages ---------------------------------------------------------------------------
    def execute(self) -> None:
        self.begin("departments")
        departments = self.sync_departments()
        self.end()
        self.begin("staff")
        self.sync_staff(departments)
        self.end()
        self.begin("tags")
        self.sync_tags()
        self.end()
        self.begin("customers")
        self.sync_customers()
        self.end()
        self.begin("groups")
        self.sync_groups()
        self.end()

    # departments ------------------------------------------------------------------------------
    def sync_departments(self) -> list[dict[str, Any]] | None:
        """The departments WeCom lists (stored), or None when the directory cannot be read."""
        if self.directory is None:
            self.warn(
                _(
                    "No WeCom app (AgentId and secret) is configured: departments were not "
                    "synced, staff come from the customer-contact member list without their "
                    "names, and nobody is marked departed."
                )
            )
            return None
        try:
            departments = self.call(self.directory.list_departments).get("department") or []
        except WeComError as error:
            self.warn(
                _(
                    "The WeCom directory could not be read with the app secret (%(error)s): "
                    "departments were not synced and nobody is marked departed."
                )
                % {"error": _describe(error)}
            )
            return None
        ordered = _parents_first(departments)
        with transaction.atomic():
            for dept in ordered:
                dept_id = _int(dept.get("id"))
                tenancy.upsert_department_from_wecom(
                    self.tenant,
                    wecom_id=dept_id,
                    name=str(dept.get("name") or dept_id),
                    parent_wecom_id=_int(dept.get("parentid")) or None,
                    by=self.actor,
                )
                self.counters["departments"] += 1
        self.advance(1.0)
        return ordered

    # staff ------------------------------------------------------------------------------------
    def sync_staff(self, departments: list[dict[str, Any]] | None) -> None:
        if departments is None:
            self.sync_contact_members()
        else:
            self.sync_directory_staff(departments)
        self.staff = {
            staff.wecom_userid: staff
            for staff in Staff.objects.for_tenant(self.tenant).filter(status=Staff.Status.ACTIVE)
        }

    def sync_contact_members(self) -> None:
        """Without the directory: the members allowed to have customers, by userid only."""
        answer = self.call(self.contact.request, "GET", "externalcontact/get_follow_user_list")
        userids = [str(u) for u in answer.get("follow_user") or () if u]
        self.counters["staff"] = len(userids)
        known = tenancy.staff_by_userid(self.tenant, userids)
        with transaction.atomic():
            for userid in userids:
                staff = known.get(userid)
                if staff is not None and staff.status == Staff.Status.ACTIVE:
                    continue
                try:
                    tenancy.upsert_staff_from_wecom(
                        self.tenant,
                        userid=userid,
                        name=staff.name if staff else userid,
                        department_wecom_ids=[staff.department.wecom_id]
                        if staff and staff.department and staff.department.wecom_id
                        else [],
                        by=self.actor,
                    )
                except ServiceError as error:
                    self.warn(_describe(error))
                    continue
                if staff is None:
                    self.counters["staff_created"] += 1

    def sync_directory_staff(self, departments: list[dict[str, Any]]) -> None:
        ids = {_int(d.get("id")) for d in departments}
        tops = [d for d in departments if _int(d.get("parentid")) not in ids]
        corp_root_visible = any(_int(d.get("parentid")) == 0 for d in departments)
        users: dict[str, dict[str, Any]] = {}
        complete = bool(departments)
        for position, top in enumerate(tops, 1):
            try:
                answer = self.call(self.directory.list_users, _int(top.get("id")), fetch_child=True)
            except WeComError as error:
                complete = False
                self.warn(
                    _("Members of department %(department)s could not be read: %(error)s")
                    % {"department": top.get("name") or top.get("id"), "error": _describe(error)}
                )
                continue
            for user in answer.get("userlist") or ():
                if user.get("userid"):
                    users.setdefault(str(user["userid"]), user)
            self.advance(0.5 * position / len(tops))
        self.counters["staff"] = len(users)
        existing = tenancy.staff_by_userid(self.tenant, users)
        department_ids = dict(
            Department.objects.for_tenant(self.tenant).values_list("id", "wecom_id")
        )
        with transaction.atomic():
            for userid, user in users.items():
                staff = existing.get(userid)
                status = _int(user.get("status"), 1)
                left = status in tenancy.WECOM_DEPARTED_STATUSES
                departments_of = [_int(d) for d in user.get("department") or () if _int(d)]
                main = _int(user.get("main_department")) or None
                wanted_department = main or (departments_of[0] if departments_of else None)
                name = _text(user.get("name"), 64) or (staff.name if staff else userid)
                if staff is None and left:
                    continue
                if (
                    staff is not None
                    and staff.name == name
                    and department_ids.get(staff.department_id) == wanted_department
                    and (staff.status == Staff.Status.DEPARTED) == left
                ):
                    continue
                try:
                    _staff, created = tenancy.upsert_staff_from_wecom(
                        self.tenant,
                        userid=userid,
                        name=name,
                        department_wecom_ids=departments_of,
                        main_department=main,
                        status=status,
                        by=self.actor,
                    )
                except ServiceError as error:
                    self.warn(f"{userid}: {_describe(error)}")
                    continue
                self.counters["staff_created"] += int(created)
            # Leaders last: a leader may be listed after the members who report to them.
            # Only when WeCom sends the field (an app without the right omits it).
            tenancy.set_direct_leaders(
                self.tenant,
                {u: user["direct_leader"] for u, user in users.items() if "direct_leader" in user},
                by=self.actor,
            )
        if not self.full:
            return
        if not (complete and corp_root_visible and users):
            self.warn(
                _(
                    "The app does not see the whole WeCom directory: staff missing from it "
                    "were not marked departed."
                )
            )
            return
        self.counters["staff_departed"] = tenancy.depart_staff_missing_from_wecom(
            self.tenant, set(users), by=self.actor
        )

    # tags -------------------------------------------------------------------------------------
    def sync_tags(self) -> None:
        with customers.tag_library_lock(self.tenant):
            seen_at = timezone.now()
            groups = self.call(self.contact.get_corp_tag_list).get("tag_group") or []
            customers.sync_corp_tags(self.tenant, groups, seen_at=seen_at, source="sync")
        self.counters["tags"] = sum(
            len(group.get("tag") or ()) for group in groups if not group.get("deleted")
        )
        self.known_tags = set(
            Tag.objects.for_tenant(self.tenant)
            .exclude(wecom_tag_id="")
            .values_list("wecom_tag_id", flat=True)
        )

    # customers and follows ------------------------------------------------------------------
    def sync_customers(self) -> None:
        userids = sorted(self.staff)
        self.expected_follows = (
            Follow.objects.for_tenant(self.tenant)
            .filter(staff__in=list(self.staff.values()), status=Follow.Status.ACTIVE)
            .count()
        )
        for chunk in _chunks(userids, MAX_BATCH_USERIDS):
            started = timezone.now()
            seen: set[tuple[int, int]] = set()
            done = self.list_customers(chunk, seen)
            if len(done) < len(chunk):
                # A member WeCom refuses (left meanwhile, no customer-contact permission)
                # fails the whole call: read the others one by one.
                done = set(done)
                for userid in chunk:
                    if userid in done:
                        continue
                    if self.list_customers([userid], seen, alone=True):
                        done.add(userid)
                    else:
                        self.incomplete.append(userid)
            if self.full and done:
                self.remove_missing_follows([self.staff[u] for u in done], seen, started)
        if self.full:
            # The customer-level tag links (what segments query) follow every friendship
            # change as it is written; a full sync also repairs any the friendships imply and
            # that are missing (data from before the links existed). Additive only.
            self.counters["customer_tags_linked"] = customers.link_marked_customer_tags(self.tenant)

    def list_customers(
        self, userids: list[str], seen: set[tuple[int, int]], *, alone: bool = False
    ) -> list[str]:
        """Read and store the customers of ``userids``; the userids fully read ([] if not)."""
        api = "externalcontact/batch/get_by_user"
        cursor: str | None = None
        cursors: set[str] = set()
        while True:
            read_at = timezone.now()
            try:
                page = self.call(
                    self.contact.batch_get_by_user, userids, cursor=cursor, limit=MAX_BATCH_LIMIT
                )
            except TRANSIENT_ERRORS:
                raise  # the client retried already: let the whole sync fail and run again
            except WeComError as error:
                if alone:
                    self.warn(
                        _("The customers of %(userid)s could not be read: %(error)s")
                        % {"userid": userids[0], "error": _describe(error)}
                    )
                return []
            self.apply_customer_page(page.get("external_contact_list") or [], read_at, seen)
            self.pages += 1
            self.advance(self.customer_fraction())
            cursor = page.get("next_cursor") or None
            if not cursor:
                return list(userids)
            if cursor in cursors:
                raise WeComError(None, _("the pagination cursor repeated"), api)
            cursors.add(cursor)

    def customer_fraction(self) -> float:
        if self.expected_follows:
            return min(self.counters["follows"] / self.expected_follows, 0.99)
        return self.pages / (self.pages + 20)  # nothing to go by on a first sync

    def apply_customer_page(
        self, items: list[dict[str, Any]], read_at: datetime, seen: set[tuple[int, int]]
    ) -> None:
        contacts: dict[str, dict[str, Any]] = {}
        entries: list[tuple[str, str, dict[str, Any]]] = []
        for item in items:
            contact = item.get("external_contact") or {}
            info = item.get("follow_info") or {}
            external_userid = str(contact.get("external_userid") or "")
            userid = str(info.get("userid") or "")
            if not external_userid or not userid:
                continue
            contacts.setdefault(external_userid, contact)
            entries.append((external_userid, userid, info))
        if not entries:
            return
        stored = {
            c.external_userid: c
            for c in Customer.objects.for_tenant(self.tenant).filter(
                external_userid__in=list(contacts)
            )
        }
        follows = {
            (f.customer_id, f.staff_id): f
            for f in Follow.objects.for_tenant(self.tenant).filter(
                customer__in=list(stored.values())
            )
        }
        tags_now: dict[int, set[str]] = {}
        for follow_id, tag_id in (
            FollowTag.objects.for_tenant(self.tenant)
            .filter(follow_id__in=[f.pk for f in follows.values()])
            .exclude(tag__wecom_tag_id="")
            .values_list("follow_id", "tag__wecom_tag_id")
        ):
            tags_now.setdefault(follow_id, set()).add(tag_id)
        with transaction.atomic():
            fresh, changed = [], []
            for external_userid, contact in contacts.items():
                if external_userid in self.customer_ids:
                    continue  # a customer of several staff: their profile is done already
                self.counters["customers"] += 1
                customer = stored.get(external_userid)
                profile = _profile(contact)
                if customer is None:
                    fresh.append(profile)
                elif _profile_unchanged(customer, profile):
                    self.customer_ids[external_userid] = customer.pk
                else:
                    changed.append(profile)
            for external_userid, (customer, created) in self.write_customers(
                fresh, changed, read_at
            ).items():
                stored[external_userid] = customer
                self.customer_ids[external_userid] = customer.pk
                self.counters["customers_created" if created else "customers_updated"] += 1
            new_follows, changed_follows = [], []
            for external_userid, userid, info in entries:
                customer = stored.get(external_userid)
                staff = self.staff.get(userid)
                if customer is None or staff is None:
                    continue
                if (customer.pk, staff.pk) not in seen:  # a page read again counts once
                    seen.add((customer.pk, staff.pk))
                    self.counters["follows"] += 1
                fields = _follow_fields(info, read_at)
                follow = follows.get((customer.pk, staff.pk))
                if follow is None:
                    new_follows.append((customer, staff, fields))
                elif not _follow_unchanged(
                    follow, fields, tags_now.get(follow.pk, set()), self.known_tags
                ):
                    changed_follows.append((customer, staff, fields))
            for began in self.write_follows(new_follows, changed_follows, read_at):
                self.counters["follows_created" if began else "follows_updated"] += 1

    def write_customers(
        self, fresh: list[dict[str, Any]], changed: list[dict[str, Any]], read_at: datetime
    ) -> dict[str, tuple[Customer, bool]]:
        """New customers in one INSERT, changed ones one by one; {external_userid: result}."""
        written: dict[str, tuple[Customer, bool]] = {}
        if fresh:
            try:
                written.update(customers.create_customers(self.tenant, fresh, seen_at=read_at))
            except ServiceError:  # an invalid profile among them: find it, one by one
                changed = fresh + changed
        for profile in changed:
            try:
                written[profile["external_userid"]] = customers.upsert_customer(
                    self.tenant, **profile, seen_at=read_at, source="sync"
                )
            except ServiceError as error:
                self.warn(f"{profile['external_userid']}: {_describe(error)}")
        return written

    def write_follows(
        self,
        new: list[tuple[Customer, Staff, dict[str, Any]]],
        changed: list[tuple[Customer, Staff, dict[str, Any]]],
        read_at: datetime,
    ) -> list[bool]:
        """New friendships in bulk, changed ones one by one; whether each began."""
        began: list[bool] = []
        if new:
            try:
                results = customers.add_follows(self.tenant, new, seen_at=read_at, source="sync")
                began += [started for _follow, started in results]
            except ServiceError:  # invalid data among them: find it, one by one
                changed = new + changed
        for customer, staff, fields in changed:
            try:
                _follow, started = customers.upsert_follow(
                    self.tenant,
                    customer=customer,
                    staff=staff,
                    seen_at=read_at,
                    source="sync",
                    **fields,
                )
            except ServiceError as error:
                self.warn(f"{customer.external_userid}/{staff.wecom_userid}: {_describe(error)}")
                continue
            began.append(started)
        return began

    def remove_missing_follows(
        self, staff: list[Staff], seen: set[tuple[int, int]], listed_from: datetime
    ) -> None:
        """End the follows of ``staff`` that WeCom no longer lists (a full sync only)."""
        by_pk = {member.pk: member for member in staff}
        missing = [
            pair
            for pair in Follow.objects.for_tenant(self.tenant)
            .filter(staff_id__in=list(by_pk), status=Follow.Status.ACTIVE)
            .values_list("customer_id", "staff_id")
            if pair not in seen
        ]
        for batch in _chunks(missing, REMOVAL_BATCH):
            rows = Customer.objects.for_tenant(self.tenant).in_bulk([c for c, _s in batch])
            with transaction.atomic():
                for customer_id, staff_id in batch:
                    follow = customers.remove_follow(
                        self.tenant,
                        customer=rows[customer_id],
                        staff=by_pk[staff_id],
                        by="staff",
                        at=listed_from,
                        source="sync",
                    )
                    if follow is not None and not follow.is_active:
                        self.counters["follows_removed"] += 1

    # groups -----------------------------------------------------------------------------------
    def sync_groups(self) -> None:
        listed_from = timezone.now()
        chat_ids: list[str] = []
        cursor: str | None = None
        cursors: set[str] = set()
        while True:
            page = self.call(self.contact.list_group_chats, status_filter=0, cursor=cursor)
            chat_ids += [
                str(g["chat_id"]) for g in page.get("group_chat_list") or () if g.get("chat_id")
            ]
            cursor = page.get("next_cursor") or None
            if not cursor:
                break
            if cursor in cursors:
                raise WeComError(
                    None, _("the pagination cursor repeated"), "externalcontact/groupchat/list"
                )
            cursors.add(cursor)
        chat_ids = list(dict.fromkeys(chat_ids))
        self.counters["groups"] = len(chat_ids)
        known = {group.chat_id: group for group in Group.objects.for_tenant(self.tenant)}
        gone: list[str] = []
        pending: list[tuple[dict[str, Any], datetime]] = []
        for position, chat_id in enumerate(chat_ids, 1):
            read_at = timezone.now()
            try:
                chat = self.call(self.contact.get_group_chat, chat_id, need_name=True)
            except WeComError as error:
                if _is_chat_gone(error):
                    gone.append(chat_id)  # dismissed between the list and now
                    continue
                raise
            chat = chat.get("group_chat") or {}
            self.counters["members"] += len(chat.get("member_list") or ())
            group = known.get(chat_id)
            if group is not None and group.status == Group.Status.DISMISSED:
                continue  # dismissal is final (upsert_group would ignore it)
            if group is None or not _group_unchanged(group, chat):
                pending.append((chat, read_at))
            if len(pending) >= GROUP_BATCH:
                self.write_groups(pending)
                pending = []
            self.advance(position / (len(chat_ids) + 1))
        self.write_groups(pending)
        listed = set(chat_ids) - set(gone)
        ended = [c for c in gone if c in known]
        if self.full:
            ended += [
                chat_id
                for chat_id, group in known.items()
                if chat_id not in listed and group.status != Group.Status.DISMISSED
            ]
        with transaction.atomic():
            for chat_id in dict.fromkeys(ended):
                group = known[chat_id]
                if group.status == Group.Status.DISMISSED:
                    continue
                community.dismiss_group(self.tenant, chat_id, listed_from, source="sync")
                self.counters["groups_dismissed"] += 1

    def write_groups(self, pending: list[tuple[dict[str, Any], datetime]]) -> None:
        if not pending:
            return
        with transaction.atomic():
            for chat, read_at in pending:
                try:
                    _group, created = community.upsert_group(
                        self.tenant,
                        chat_id=chat.get("chat_id") or "",
                        name=chat.get("name") or "",
                        owner_userid=chat.get("owner") or "",
                        notice=chat.get("notice") or "",
                        created_at=_int(chat.get("create_time")) or None,
                        admin_userids=chat.get("admin_list") or (),
                        members=chat.get("member_list") or [],
                        member_version=str(chat.get("member_version") or ""),
                        seen_at=read_at,
                        source="sync",
                    )
                except ServiceError as error:
                    self.warn(f"{chat.get('chat_id')}: {_describe(error)}")
                    continue
                self.counters["groups_created" if created else "groups_updated"] += 1


def _describe(error: BaseException) -> str:
    return str(getattr(error, "message", "") or error) or type(error).__name__


def _directory_client(tenant: Tenant, contact: WeComClient) -> WeComClient | None:
    if not has_app_secret(tenant):
        return None
    try:
        return client_for(tenant, secret="app", base_url=contact.base_url, rate_limit_max_wait=60)
    except ServiceError:  # e.g. an AgentId that is not a number: reported as "no app"
        return None


def sync_tenant(
    tenant: Tenant,
    *,
    full: bool = True,
    progress: Callable[[SyncProgress], None] | None = None,
    client: WeComClient | None = None,
    directory_client: WeComClient | None = None,
    trigger: str = SyncRun.Trigger.CLI,
) -> SyncReport:
    """Reconcile ``tenant``'s staff, departments, tags, customers and groups with WeCom.

    ``full`` also removes what WeCom no longer has (see the module docstring). ``client``
    (the customer-contact secret's) and ``directory_client`` (the app secret's) replace the
    tenant's own clients, e.g. in tests. Raises ``WeComNotConfigured`` for a tenant without
    a corp id and customer-contact secret, ``SyncAlreadyRunning`` when another sync of the
    tenant runs, and the ``WeComError`` that stopped the sync (recorded on its ``SyncRun``).
    """
    default = client_for(tenant, rate_limit_max_wait=60)  # raises WeComNotConfigured
    contact = client or default
    directory = directory_client or _directory_client(tenant, contact)
    with _tenant_lock(tenant) as refresh_lock:
        # Runs cut off by a crash (no heartbeat for long) are closed first.
        SyncRun.objects.for_tenant(tenant).filter(status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.FAILED,
            error=_("Interrupted (no progress for a long time)."),
            finished_at=timezone.now(),
        )
        sync = _Sync(
            tenant,
            full=full,
            contact=contact,
            directory=directory,
            progress=progress,
            trigger=trigger,
            refresh_lock=refresh_lock,
        )
        try:
            sync.execute()
        except BaseException as error:
            logger.exception("WeCom sync of %s failed", tenant.slug)
            sync.finish(error)
            raise
        report = sync.finish()
    # The sync's own events are bulk (no per-customer stage work): the stages follow as one
    # set-based pass, so that a first import does not show every customer as "new".
    from siyu.core.tasks import on_commit_task
    from siyu.customers.lifecycle import recompute_stages_task

    on_commit_task(recompute_stages_task, tenant.pk)
    logger.info(
        "WeCom %s sync of %s done in %.1f s: %s",
        report.kind,
        tenant.slug,
        report.seconds,
        report.counters,
    )
    return report


def request_sync(
    tenant: Tenant, *, full: bool, by: Actor, trigger: str = SyncRun.Trigger.CONSOLE
) -> None:
    """Queue a sync of ``tenant`` (the console's "Sync now"); refuses when one is running."""
    from siyu.wecom.tasks import sync_tenant_task

    client_for(tenant)  # raises WeComNotConfigured with what is missing
    if running_run(tenant) is not None:
        raise SyncAlreadyRunning(
            _("A WeCom sync of %(tenant)s is already running; try again when it has finished.")
            % {"tenant": tenant.name}
        )
    kind = SyncRun.Kind.FULL if full else SyncRun.Kind.INCREMENTAL
    with transaction.atomic():
        record_audit(by, "wecom.sync_requested", tenant, changes={"kind": [None, kind]})
        on_commit_task(sync_tenant_task, tenant.pk, full, trigger)


# --- the command line -------------------------------------------------------------------------
class _ProgressLines:
    """The CLI's view of a sync: a line per finished stage, under a progress bar on a terminal
    (plain lines when the output is a file or a pipe, e.g. a cron log)."""

    def __init__(self) -> None:
        import click

        self.click = click
        self.bar = None
        self.shown = 0
        if sys.stdout.isatty():
            self.bar = click.progressbar(
                length=1000, label="", show_percent=True, show_eta=False, width=30
            )

    def __enter__(self) -> Callable[[SyncProgress], None]:
        if self.bar is not None:
            self.bar.__enter__()
        return self.show

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def show(self, update: SyncProgress) -> None:
        if self.bar is not None:
            self.bar.label = str(STAGE_NAMES.get(update.stage, update.stage))
            target = int(update.percent * 10)
            if target > self.shown:
                self.bar.update(target - self.shown)
                self.shown = target
        if update.stage_done and update.stage in STAGES:
            line = f"  ✓ {STAGE_NAMES[update.stage]}: {update.message}"
            self.click.echo(f"\r{line.ljust(100)}" if self.bar is not None else line)


def run_sync_cli(tenant_slug: str | None, full: bool) -> int:
    """``siyu wecom sync [--tenant SLUG] [--full/--incremental]``: sync and show progress.

    Without a slug every tenant with a corp id and customer-contact secret is synced. Prints
    a line per stage with its counts under a progress bar; returns the exit code (0 all
    synced, 1 a sync failed or was already running, 2 no such tenant / nothing to sync).
    """
    import click

    if tenant_slug:
        tenant = Tenant.objects.filter(slug=tenant_slug.strip().lower()).first()
        if tenant is None:
            click.echo(_("No tenant %(slug)s.") % {"slug": tenant_slug}, err=True)
            return 2
        tenants = [tenant]
    else:
        tenants = configured_tenants()
        if not tenants:
            click.echo(
                _("No tenant has a WeCom corp id and customer-contact secret yet."), err=True
            )
            return 2
    failed = 0
    for tenant in tenants:
        kind = _("full") if full else _("incremental")
        click.echo(
            _("WeCom %(kind)s sync of %(tenant)s (%(slug)s)")
            % {"kind": kind, "tenant": tenant.name, "slug": tenant.slug}
        )
        try:
            with _ProgressLines() as show:
                report = sync_tenant(tenant, full=full, progress=show, trigger="cli")
        except Exception as error:  # refused, an outage or a bug: say so, go on with the next
            failed += 1
            click.echo(f"  ✗ {_describe(error)}", err=True)
            continue
        for warning in report.warnings:
            click.echo(f"  ! {warning}")
        done = _("done in %(seconds).1f s, %(calls)d WeCom calls") % {
            "seconds": report.seconds,
            "calls": report.counters["calls"],
        }
        click.echo(f"  {done}")
    return 1 if failed else 0
