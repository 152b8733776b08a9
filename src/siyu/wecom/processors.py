"""What each WeCom callback changes in Siyu.

Each processor reads the callback, fetches what the callback does not carry from WeCom
through the real client, and hands the result to the owning domain's services, which record
the normalised Siyu events (``follow.added``, ``group.member_joined``, ``staff.departed`` …).
WeCom's ``CreateTime`` is passed on as ``seen_at`` so that a late, out-of-order delivery never
overwrites a newer state.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from siyu.tenancy import services as tenancy
from siyu.tenancy.models import Department, Tenant
from siyu.wecom.processing import processes, processes_together, seen_at


def _actor(tenant: Tenant):
    return tenancy.system_actor(tenant, channel="wecom")


def _ints(value: Any) -> list[int]:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return [int(part) for part in str(value or "").split(",") if part.strip().isdigit()]


# --- change_contact: the corp directory ---------------------------------------------------
@processes("change_contact", "create_user", "update_user")
def staff_changed(tenant: Tenant, message: dict[str, Any]) -> bool:
    userid = message.get("NewUserID") or message.get("UserID")
    if not userid:
        return False
    from siyu.tenancy.models import Staff

    known = Staff.objects.for_tenant(tenant).filter(wecom_userid=message.get("UserID")).first()
    # Since 2022-08 WeCom sends only UserID and Department: keep the name we know.
    name = message.get("Name") or (known.name if known else userid)
    departments = _ints(message.get("Department"))
    main = _ints(message.get("MainDepartment"))
    status = _ints(message.get("Status")) or [1]
    tenancy.upsert_staff_from_wecom(
        tenant,
        userid=str(userid),
        name=str(name),
        department_wecom_ids=departments,
        main_department=main[0] if main else None,
        status=status[0],
        # Only when sent (callbacks configured since 2022-08 carry UserID and Department only)
        direct_leader=str(message["DirectLeader"] or "") if "DirectLeader" in message else None,
        by=_actor(tenant),
    )
    return True


@processes("change_contact", "delete_user")
def staff_deleted(tenant: Tenant, message: dict[str, Any]) -> bool:
    from siyu.tenancy.models import Staff

    staff = Staff.objects.for_tenant(tenant).filter(wecom_userid=message.get("UserID")).first()
    if staff is None:
        return False
    tenancy.mark_staff_departed(staff, by=_actor(tenant))
    return True


@processes("change_contact", "create_party", "update_party")
def department_changed(tenant: Tenant, message: dict[str, Any]) -> bool:
    ids = _ints(message.get("Id"))
    if not ids:
        return False
    existing = Department.objects.for_tenant(tenant).filter(wecom_id=ids[0]).first()
    parent = _ints(message.get("ParentId"))
    tenancy.upsert_department_from_wecom(
        tenant,
        wecom_id=ids[0],
        name=str(message.get("Name") or (existing.name if existing else ids[0])),
        parent_wecom_id=parent[0]
        if parent
        else (existing.parent.wecom_id if existing and existing.parent else None),
        by=_actor(tenant),
    )
    return True


# --- change_external_contact: customers and their friendships ------------------------------
def _staff(tenant: Tenant, userid: str):
    """The staff WeCom names, created on the fly if the directory sync has not run yet."""
    staff = tenancy.staff_by_userid(tenant, [userid]).get(userid)
    if staff is None:
        staff, _ = tenancy.upsert_staff_from_wecom(
            tenant, userid=userid, name=userid, by=_actor(tenant)
        )
    return staff


def _tag_ids(follow_user: dict[str, Any]) -> list[str]:
    """Corp tags only (type 1); personal tags (type 2) are the member's own notes."""
    return [
        str(tag["tag_id"])
        for tag in follow_user.get("tags") or ()
        if tag.get("tag_id") and int(tag.get("type", 1)) == 1
    ]


def apply_external_contact(
    tenant: Tenant, detail: dict[str, Any], userid: str, *, seen, source: str
):
    """Upsert the customer of an ``externalcontact/get`` answer and their follow of ``userid``.

    Returns ``(customer, follow)``; ``follow`` is None when WeCom lists no such follow.
    """
    contact = detail.get("external_contact") or {}
    with transaction.atomic():  # one commit for the customer and their friendship
        return _apply_external_contact(tenant, contact, detail, userid, seen=seen, source=source)


def _apply_external_contact(
    tenant: Tenant, contact: dict[str, Any], detail: dict[str, Any], userid: str, *, seen, source
):
    from siyu.customers import services as customers
    from siyu.customers.selectors import current_customer

    customer, _ = customers.upsert_customer(
        tenant, **_profile(contact), seen_at=seen, source=source
    )
    customer = current_customer(customer)  # a merged record's friendships live on its survivor
    entry = next((f for f in detail.get("follow_user") or () if f.get("userid") == userid), None)
    if entry is None:
        return customer, None
    follow, _ = customers.upsert_follow(
        tenant,
        customer=customer,
        staff=_staff(tenant, userid),
        **_follow_fields(entry, seen),
        seen_at=seen,
        source=source,
    )
    return customer, follow


@processes(
    "change_external_contact",
    "add_external_contact",
    "add_half_external_contact",
    "edit_external_contact",
)
def external_contact_added_or_edited(tenant: Tenant, message: dict[str, Any]) -> bool:
    from siyu.wecom.client import client_for
    from siyu.wecom.errors import WeComNotFound

    userid, external_userid = message.get("UserID"), message.get("ExternalUserID")
    if not userid or not external_userid:
        return False
    try:
        detail = client_for(tenant).get_external_contact(external_userid)
    except WeComNotFound:
        return False  # gone again before we asked (deleted within seconds)
    seen = seen_at(message)
    customer, follow = apply_external_contact(tenant, detail, userid, seen=seen, source="callback")
    if follow is None and message.get("ChangeType") != "edit_external_contact":
        follow = _added_then_deleted(tenant, message, customer)
    if message.get("ChangeType") == "add_external_contact":
        _route_add(tenant, message, customer, follow)
    return follow is not None


@processes_together("change_external_contact", "add_external_contact")
def new_friends_together(tenant: Tenant, messages: list[dict[str, Any]]) -> list[bool | None]:
    """A burst of adds: each contact fetched from WeCom, then every new customer and
    friendship written in one transaction with the sync's bulk statements (``create_customers``,
    ``add_follows``: the same rows and events as one by one). An add WeCom no longer shows
    (deleted within seconds) is left to the one-by-one path, which records it honestly."""
    from siyu.wecom.client import client_for
    from siyu.wecom.errors import WeComNotFound

    client = client_for(tenant)
    outcomes: list[bool | None] = [None] * len(messages)
    fetched: list[tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    for index, message in enumerate(messages):
        userid, external_userid = message.get("UserID"), message.get("ExternalUserID")
        if not userid or not external_userid:
            outcomes[index] = False
            continue
        try:
            detail = client.get_external_contact(external_userid)
        except WeComNotFound:
            continue  # None: alone, as an add then deleted
        entry = next(
            (f for f in detail.get("follow_user") or () if f.get("userid") == userid), None
        )
        if entry is not None:
            fetched.append((index, message, detail, entry))
    if not fetched:
        return outcomes
    with transaction.atomic():
        written = _write_new_friends(tenant, fetched)
    for (index, message, _detail, _entry), (customer, follow) in zip(fetched, written, strict=True):
        outcomes[index] = True
        _route_add(tenant, message, customer, follow)
    return outcomes


def _write_new_friends(tenant: Tenant, fetched: list) -> list[tuple[Any, Any]]:
    from siyu.customers import services as customers
    from siyu.customers.selectors import current_customer

    profiles = {}
    for _index, message, detail, _entry in fetched:
        profile = _profile(detail.get("external_contact") or {})
        profiles[profile["external_userid"]] = (profile, seen_at(message))
    created = customers.create_customers(
        tenant,
        [profile for profile, _seen in profiles.values()],
        seen_at=min(seen for _profile, seen in profiles.values()),  # never newer than a row's own
    )
    by_id = {}
    for external_userid, (customer, is_new) in created.items():
        profile, seen = profiles[external_userid]
        if not is_new:  # known already: refresh the profile as one add alone would
            customer, _ = customers.upsert_customer(
                tenant, **profile, seen_at=seen, source="callback"
            )
        by_id[external_userid] = current_customer(customer)
    staff = tenancy.staff_by_userid(tenant, [message["UserID"] for _i, message, *_ in fetched])
    by_seen: dict[Any, list[int]] = {}
    items = []
    for position, (_index, message, detail, entry) in enumerate(fetched):
        userid = message["UserID"]
        if userid not in staff:
            staff[userid] = _staff(tenant, userid)
        customer = by_id[detail["external_contact"]["external_userid"]]
        items.append((customer, staff[userid], _follow_fields(entry, seen_at(message))))
        by_seen.setdefault(seen_at(message), []).append(position)
    written: list[tuple[Any, Any]] = [None] * len(items)  # type: ignore[list-item]
    for seen, positions in by_seen.items():  # a follow's watermark is its callback's time
        results = customers.add_follows(
            tenant, [items[p] for p in positions], seen_at=seen, source="callback"
        )
        for position, (follow, _began) in zip(positions, results, strict=True):
            written[position] = (items[position][0], follow)
    return written


def _profile(contact: dict[str, Any]) -> dict[str, Any]:
    return {
        "external_userid": contact["external_userid"],
        "name": contact.get("name", ""),
        "avatar": contact.get("avatar", ""),
        "type": int(contact.get("type", 1)),
        "gender": int(contact.get("gender", 0)),
        "unionid": contact.get("unionid", ""),
        "corp_name": contact.get("corp_name", ""),
        "corp_full_name": contact.get("corp_full_name", ""),
        "position": contact.get("position", ""),
    }


def _follow_fields(entry: dict[str, Any], seen) -> dict[str, Any]:
    return {
        "added_at": int(entry.get("createtime") or seen.timestamp()),
        "remark": entry.get("remark", ""),
        "description": entry.get("description", ""),
        "remark_mobiles": entry.get("remark_mobiles") or (),
        "remark_corp_name": entry.get("remark_corp_name", ""),
        "add_way": int(entry.get("add_way", 0)),
        "state": entry.get("state", ""),
        "oper_userid": entry.get("oper_userid", ""),
        "tag_ids": _tag_ids(entry),
    }


def _route_add(tenant: Tenant, message: dict[str, Any], customer, follow) -> None:
    """An add through a Siyu code (its ``State``): attribution, welcome message and the rest."""
    from siyu.wecom.routing import AddedByState, route

    state, code = message.get("State") or "", message.get("WelcomeCode") or ""
    if state and follow is not None:
        route(AddedByState(tenant, state, code, customer, follow))


DELETIONS = {"del_follow_user": "customer", "del_external_contact": "staff"}


def _added_then_deleted(tenant: Tenant, message: dict[str, Any], customer):
    """An add WeCom no longer shows: the friendship ended before we asked.

    Record it as it happened (added at the callback's time) so that funnels and churn stay
    honest, then apply the deletion if its callback already arrived (out of order) and was
    set aside; a deletion still to come will apply itself.
    """
    from siyu.customers import services as customers
    from siyu.wecom.models import CallbackInbox

    userid, external_userid = message["UserID"], message["ExternalUserID"]
    seen = seen_at(message)
    follow, _ = customers.upsert_follow(
        tenant,
        customer=customer,
        staff=_staff(tenant, userid),
        added_at=seen,
        state=message.get("State") or "",
        seen_at=seen,
        source="callback",
    )
    earlier = (
        CallbackInbox.objects.for_tenant(tenant)
        .filter(
            event="change_external_contact",
            change_type__in=list(DELETIONS),
            payload__UserID=userid,
            payload__ExternalUserID=external_userid,
            create_time__gte=int(seen.timestamp()),
        )
        .order_by("create_time")
        .first()
    )
    if earlier is not None:
        customers.remove_follow(
            tenant,
            customer=customer,
            staff=follow.staff,
            by=DELETIONS[earlier.change_type],
            at=seen_at(earlier.payload),
            source="callback",
        )
    return follow


def _removed(tenant: Tenant, message: dict[str, Any], by: str) -> bool:
    from siyu.customers import services as customers
    from siyu.customers.selectors import customer_by_external_userid

    customer = customer_by_external_userid(tenant, message.get("ExternalUserID", ""))
    staff = tenancy.staff_by_userid(tenant, [message.get("UserID", "")]).get(
        message.get("UserID", "")
    )
    if customer is None or staff is None:
        return False
    follow = customers.remove_follow(
        tenant, customer=customer, staff=staff, by=by, at=seen_at(message), source="callback"
    )
    return follow is not None


@processes("change_external_contact", *DELETIONS)
def friendship_deleted(tenant: Tenant, message: dict[str, Any]) -> bool:
    if message.get("Source") == TRANSFER_DELETION:
        return _transferred_away(tenant, message)
    return _removed(tenant, message, DELETIONS[message["ChangeType"]])


# --- transfers (staff hand-over): siyu.customers.handover -------------------------------------
TRANSFER_DELETION = "DELETE_BY_TRANSFER"  # del_external_contact's Source when a transfer did it


def _transferred_away(tenant: Tenant, message: dict[str, Any]) -> bool:
    """The old staff's friendship ended because a transfer completed: a hand-over result,
    not a staff deleting a customer (no churn alert)."""
    from siyu.customers import handover
    from siyu.customers.selectors import customer_by_external_userid

    customer = customer_by_external_userid(tenant, message.get("ExternalUserID", ""))
    userid = message.get("UserID", "")
    staff = tenancy.staff_by_userid(tenant, [userid]).get(userid)
    if customer is None or staff is None:
        return False
    return handover.transfer_observed(tenant, customer, staff, at=seen_at(message))


@processes("change_external_contact", "transfer_fail")
def transfer_failed(tenant: Tenant, message: dict[str, Any]) -> bool:
    """The customer refused the takeover staff, or that staff has too many customers: the
    fact on the timeline, and the waiting hand-over item settled (refused / limit)."""
    from siyu.core.events import record_event
    from siyu.customers import handover
    from siyu.customers.selectors import customer_by_external_userid

    customer = customer_by_external_userid(tenant, message.get("ExternalUserID", ""))
    userid = message.get("UserID", "")
    staff = tenancy.staff_by_userid(tenant, [userid]).get(userid)
    record_event(
        tenant,
        "follow.transfer_failed",
        key=f"follow.transfer_failed:{message.get('ExternalUserID')}:{userid}:"
        f"{message.get('CreateTime')}",
        staff=staff,
        customer_id=customer.pk if customer else None,
        payload={
            "external_userid": message.get("ExternalUserID", ""),
            "takeover_userid": userid,
            "fail_reason": message.get("FailReason", ""),
        },
        source="callback",
        occurred_at=seen_at(message),
    )
    handover.transfer_failed(
        tenant, customer, staff, str(message.get("FailReason") or ""), at=seen_at(message)
    )
    return True


# --- change_external_chat: customer groups -------------------------------------------------
def apply_group_chat(tenant: Tenant, group_chat: dict[str, Any], *, seen, source: str):
    from siyu.community import services as community

    group, _ = community.upsert_group(
        tenant,
        chat_id=group_chat["chat_id"],
        name=group_chat.get("name", ""),
        owner_userid=group_chat.get("owner", ""),
        notice=group_chat.get("notice", ""),
        created_at=group_chat.get("create_time"),
        admin_userids=group_chat.get("admin_list") or (),
        members=group_chat.get("member_list") or [],
        member_version=str(group_chat.get("member_version", "")),
        seen_at=seen,
        source=source,
    )
    return group


def _member_changes(message: dict[str, Any]) -> list[str]:
    changes = message.get("MemChangeList") or []
    if isinstance(changes, str):
        changes = [changes]
    if isinstance(changes, dict):
        changes = list(changes.values())
    return [str(item) for item in changes if item]


@processes("change_external_chat", "create", "update")
def group_chat_changed(tenant: Tenant, message: dict[str, Any]) -> bool:
    from siyu.community import services as community
    from siyu.community.models import Group
    from siyu.wecom.client import client_for
    from siyu.wecom.errors import WeComError, WeComNotFound

    chat_id = message.get("ChatId")
    if not chat_id:
        return False
    seen = seen_at(message)
    known = Group.objects.for_tenant(tenant).filter(chat_id=chat_id).exists()
    if known and message.get("UpdateDetail") == "del_member":
        quit_scene = _ints(message.get("QuitScene"))
        community.remove_group_members(
            tenant,
            chat_id,
            _member_changes(message),
            quit_scene[0] if quit_scene else 0,
            seen,
            source="callback",
        )
    try:
        detail = client_for(tenant).get_group_chat(chat_id, need_name=True)
    except WeComError as error:
        gone = isinstance(error, WeComNotFound) or getattr(error, "errcode", None) == 40050
        if gone and known:  # dismissed meanwhile
            community.dismiss_group(tenant, chat_id, seen, source="callback")
            return True
        raise
    apply_group_chat(tenant, detail["group_chat"], seen=seen, source="callback")
    return True


@processes("change_external_chat", "dismiss")
def group_chat_dismissed(tenant: Tenant, message: dict[str, Any]) -> bool:
    from siyu.community import services as community

    if not message.get("ChatId"):
        return False
    group = community.dismiss_group(tenant, message["ChatId"], seen_at(message), source="callback")
    return group is not None


# --- change_external_tag: the corp's tag library -------------------------------------------
@processes("change_external_tag", "create", "update", "delete", "shuffle")
def corp_tags_changed(tenant: Tenant, message: dict[str, Any]) -> bool:
    from siyu.customers import services as customers
    from siyu.wecom.client import client_for

    with customers.tag_library_lock(tenant):
        tag_groups = client_for(tenant).get_corp_tag_list().get("tag_group") or []
        customers.sync_corp_tags(tenant, tag_groups, seen_at=seen_at(message), source="callback")
    return True
