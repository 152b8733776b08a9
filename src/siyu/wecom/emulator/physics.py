"""What people do in WeCom's apps, and what WeCom then does: the world's physics.

Customers scan contact-way QR codes, add and delete staff, join and leave groups, chat;
staff confirm mass messages, edit tags in the client, leave the corp; transfers complete
after their delay. Each function changes the world (the caller holds ``world.lock``) and
emits the callbacks WeCom emits for it. Changes made through the *API* emit no callbacks,
as WeCom documents ("通过API进行的操作不会产生回调"); the API handlers therefore only call
the helpers here that emit nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from siyu.wecom.emulator import callbacks as xml
from siyu.wecom.emulator.state import (
    Corp,
    Customer,
    Department,
    EmulatorError,
    Follow,
    GroupChat,
    GroupMember,
    JoinWay,
    Staff,
    Tag,
    TagGroup,
    Transfer,
    WelcomeCode,
    World,
)

# Scan a contact way / add by search: WeCom's add_way values.
ADD_WAY_QR = 1
ADD_WAY_MOBILE = 2
ADD_WAY_CARD = 3
ADD_WAY_GROUP = 4
ADD_WAY_ASSIGNED = 202
# groupchat/get's join_scene (1 invited, 2 invite link, 3 group QR) and the callback's
# JoinScene for the same (0, 1, 3): WeCom numbers them differently.
JOIN_SCENES = {"invite": 1, "link": 2, "qr": 3}
CALLBACK_JOIN_SCENE = {1: 0, 2: 1, 3: 3}


# --- customers ---------------------------------------------------------------------------------
def new_customer(world: World, corp: Corp, fields: dict[str, Any] | None = None) -> Customer:
    fields = dict(fields or {})
    now = world.now()
    external_userid = fields.get("external_userid") or world.ids.external_userid()
    if external_userid in corp.customers:
        raise EmulatorError(f"customer {external_userid} exists", 409)
    kind = int(fields.get("type") or 1)
    number = len(corp.customers) + 1
    # a WeChat user has a unionid unless told otherwise ("unionid": null or "")
    unionid = fields.get("unionid") if "unionid" in fields else None
    if "unionid" not in fields and kind == 1:
        unionid = world.ids.unionid()
    customer = Customer(
        external_userid=external_userid,
        name=str(fields.get("name") or f"微信用户{number}"),
        type=kind,
        gender=int(fields.get("gender") if fields.get("gender") is not None else 0),
        avatar=str(fields.get("avatar") or f"http://wx.qlogo.cn/mmhead/{world.ids.chars(40)}/0"),
        unionid=str(unionid or ""),
        position=str(fields.get("position") or ""),
        corp_name=str(fields.get("corp_name") or ""),
        corp_full_name=str(fields.get("corp_full_name") or ""),
        created_at=now,
    )
    corp.customers[external_userid] = customer
    return customer


def resolve_customer(world: World, corp: Corp, body: dict[str, Any]) -> Customer:
    """The customer named by ``external_userid``, or a new one from ``customer`` fields."""
    external_userid = body.get("external_userid")
    if external_userid:
        customer = corp.customers.get(external_userid)
        if customer is None:
            raise EmulatorError(f"no customer {external_userid}", 404)
        return customer
    return new_customer(world, corp, body.get("customer") or {})


def active_staff(corp: Corp, userid: str) -> Staff:
    staff = corp.active_staff(userid)
    if staff is None:
        raise EmulatorError(f"no active staff {userid!r}", 404)
    return staff


def issue_welcome_code(world: World, corp: Corp, userid: str, external_userid: str) -> str | None:
    """A welcome code, unless the two already chatted (WeCom then sends none)."""
    if f"{userid}|{external_userid}" in corp.chatted:
        return None
    now = world.now()
    # Forget codes long dead so that the saved world does not grow without bound.
    for code in [c for c, w in corp.welcome_codes.items() if now - w.created_at > 3600]:
        del corp.welcome_codes[code]
    code = world.ids.welcome_code()
    corp.welcome_codes[code] = WelcomeCode(code, userid, external_userid, now)
    return code


def add_follow(
    world: World,
    corp: Corp,
    customer: Customer,
    userid: str,
    *,
    add_way: int,
    state: str = "",
    oper_userid: str = "",
    event: str = "add_external_contact",
    welcome: bool = True,
) -> dict[str, Any]:
    """A customer and a member become friends: follow, statistics, welcome code, callback."""
    active_staff(corp, userid)
    if userid in customer.follows:
        return {
            "external_userid": customer.external_userid,
            "userid": userid,
            "already_friends": True,
        }
    now = world.now()
    corp.add_follow(
        customer,
        Follow(
            userid=userid,
            createtime=now,
            add_way=add_way,
            state=state,
            oper_userid=oper_userid or customer.external_userid,
        ),
    )
    stats = corp.behavior_for(userid, now)
    stats["new_apply_cnt"] += 1
    stats["new_contact_cnt"] += 1
    code = issue_welcome_code(world, corp, userid, customer.external_userid) if welcome else None
    xml.emit(
        world,
        corp,
        xml.external_contact_xml(
            corp.corp_id,
            now,
            event,
            userid,
            customer.external_userid,
            state=state,
            welcome_code=code,
        ),
        "change_external_contact",
        event,
    )
    return {
        "external_userid": customer.external_userid,
        "userid": userid,
        "state": state,
        "welcome_code": code,
        "already_friends": False,
    }


def staff_pool(corp: Corp, user: list[str], party: list[int]) -> list[str]:
    pool = [u for u in user if corp.active_staff(u)]
    for userid in corp.staff_in_departments(party):
        if userid not in pool:
            pool.append(userid)
    return pool


def config_id_from(value: str) -> str:
    """A config id, or the one at the end of a QR-code URL the emulator issued."""
    return value.rstrip("/").rsplit("/", 1)[-1].removesuffix(".png")


def scan_contact_way(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """A customer scans a contact way's QR code (or taps its mini-program button)."""
    config_id = body.get("config_id") or config_id_from(str(body.get("qr_code") or ""))
    way = corp.contact_ways.get(config_id)
    if way is None:
        raise EmulatorError(f"no contact way {config_id!r}", 404)
    now = world.now()
    if way.is_temp and (way.scans or (way.expires_in and now > way.created_at + way.expires_in)):
        raise EmulatorError("the temporary contact way was used or has expired", 410)
    pool = staff_pool(corp, way.user, way.party)
    if not pool:
        raise EmulatorError("no active member uses this contact way", 409)
    userid = body.get("userid")
    if userid:
        if userid not in pool:
            raise EmulatorError(f"{userid!r} does not use this contact way", 409)
    else:
        userid = pool[way.next_index % len(pool)]
        way.next_index += 1
    customer = resolve_customer(world, corp, body)
    way.scans += 1
    event = "add_half_external_contact" if body.get("half") else "add_external_contact"
    result = add_follow(
        world,
        corp,
        customer,
        userid,
        add_way=int(body.get("add_way") or ADD_WAY_QR),
        state=way.state,
        event=event,
    )
    return {**result, "config_id": config_id}


def bulk_customers(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """Many customers with their friendships at once (seeding large worlds: benchmarks, demos).

    ``customers`` is a list of customer fields, each with ``follows``: ``[{"userid",
    "createtime", "add_way", "state", "remark", "description", "tags": [tag ids]}]``
    (``createtime`` defaults to now). These are friendships that already existed: no
    callbacks, welcome codes or statistics unless ``"silent": false``, which adds each
    friendship as if made now (``add_contact``) with its callback.
    """
    specs = body.get("customers")
    if not isinstance(specs, list):
        raise EmulatorError("give customers (a list)")
    silent = body.get("silent", True) is not False
    now = world.now()
    given: set[str] = set()
    for spec in specs:  # check everything first: a bad item changes nothing
        if not isinstance(spec, dict):
            raise EmulatorError("each customer is an object")
        external_userid = spec.get("external_userid")
        if external_userid and (external_userid in corp.customers or external_userid in given):
            raise EmulatorError(f"customer {external_userid} exists", 409)
        if external_userid:
            given.add(external_userid)
        for follow in spec.get("follows") or []:
            active_staff(corp, str(follow.get("userid") or ""))
            for tag_id in follow.get("tags") or []:
                if corp.tag(tag_id) is None:
                    raise EmulatorError(f"no tag {tag_id!r}", 404)
    external_userids, follows = [], 0
    for spec in specs:
        fields = {k: v for k, v in spec.items() if k != "follows"}
        customer = new_customer(world, corp, fields)
        external_userids.append(customer.external_userid)
        for item in spec.get("follows") or []:
            userid = str(item["userid"])
            if userid in customer.follows:
                continue
            if silent:
                corp.add_follow(
                    customer,
                    Follow(
                        userid=userid,
                        createtime=int(item.get("createtime") or now),
                        add_way=int(item.get("add_way") or ADD_WAY_QR),
                        state=str(item.get("state") or ""),
                        oper_userid=str(item.get("oper_userid") or customer.external_userid),
                        remark=str(item.get("remark") or ""),
                        description=str(item.get("description") or ""),
                        tags=list(dict.fromkeys(str(t) for t in item.get("tags") or [])),
                    ),
                )
            else:
                add_follow(
                    world,
                    corp,
                    customer,
                    userid,
                    add_way=int(item.get("add_way") or ADD_WAY_QR),
                    state=str(item.get("state") or ""),
                )
                customer.follows[userid].tags = list(
                    dict.fromkeys(str(t) for t in item.get("tags") or [])
                )
            follows += 1
    return {
        "customers": len(external_userids),
        "follows": follows,
        "external_userids": external_userids,
    }


# --- relationships ended -----------------------------------------------------------------------
def _existing_follow(corp: Corp, body: dict[str, Any]) -> tuple[Customer, str]:
    customer = corp.customers.get(body.get("external_userid") or "")
    userid = body.get("userid") or ""
    if customer is None or userid not in customer.follows:
        raise EmulatorError(
            f"{body.get('userid')!r} and {body.get('external_userid')!r} are not friends", 404
        )
    return customer, userid


def customer_deletes_staff(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    customer, userid = _existing_follow(corp, body)
    now = world.now()
    corp.remove_follow(customer, userid)
    corp.behavior_for(userid, now)["negative_feedback_cnt"] += 1
    xml.emit(
        world,
        corp,
        xml.external_contact_xml(
            corp.corp_id, now, "del_follow_user", userid, customer.external_userid
        ),
        "change_external_contact",
        "del_follow_user",
    )
    return {"external_userid": customer.external_userid, "userid": userid}


def staff_deletes_customer(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    customer, userid = _existing_follow(corp, body)
    now = world.now()
    corp.remove_follow(customer, userid)
    xml.emit(
        world,
        corp,
        xml.external_contact_xml(
            corp.corp_id, now, "del_external_contact", userid, customer.external_userid
        ),
        "change_external_contact",
        "del_external_contact",
    )
    return {"external_userid": customer.external_userid, "userid": userid}


def edit_contact(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """The member edits the customer's remark, description or tags in the WeCom client."""
    customer, userid = _existing_follow(corp, body)
    follow = customer.follows[userid]
    for name in ("remark", "description", "remark_corp_name"):
        if body.get(name) is not None:
            setattr(follow, name, str(body[name]))
    if body.get("remark_mobiles") is not None:
        follow.remark_mobiles = [str(m) for m in body["remark_mobiles"] if m]
    for tag_id in body.get("add_tags") or []:
        if corp.tag(tag_id) is None:
            raise EmulatorError(f"no tag {tag_id!r}", 404)
        if tag_id not in follow.tags:
            follow.tags.append(tag_id)
    removed = set(body.get("remove_tags") or [])
    follow.tags = [t for t in follow.tags if t not in removed]
    xml.emit(
        world,
        corp,
        xml.external_contact_xml(
            corp.corp_id, world.now(), "edit_external_contact", userid, customer.external_userid
        ),
        "change_external_contact",
        "edit_external_contact",
    )
    return {"external_userid": customer.external_userid, "userid": userid, "tags": follow.tags}


def chat(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """Private messages between a member and a customer (statistics; no more welcome code)."""
    customer, userid = _existing_follow(corp, body)
    now = world.now()
    sender = body.get("from", "customer")
    for _ in range(int(body.get("count") or 1)):
        if sender == "staff":
            corp.record_staff_message(userid, customer.external_userid, now)
        else:
            corp.record_customer_message(userid, customer.external_userid, now)
    return {"external_userid": customer.external_userid, "userid": userid}


# --- transfers ---------------------------------------------------------------------------------
def settle(world: World, corp: Corp) -> int:
    """Complete the transfers whose waiting time (24 h by default) has passed."""
    if not corp.transfers:
        return 0
    now = world.now()
    delay = corp.settings.transfer_delay_seconds
    due = [t for t in corp.transfers if t.status == 2 and now >= t.requested_at + delay]
    for transfer in due:
        complete_transfer(world, corp, transfer)
    return len(due)


def add_contact(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """A customer adds a member directly (card, search), or the member adds the customer."""
    userid = str(body.get("userid") or "")
    active_staff(corp, userid)
    customer = resolve_customer(world, corp, body)
    by_staff = body.get("by") == "staff"
    return add_follow(
        world,
        corp,
        customer,
        userid,
        add_way=int(body.get("add_way") or (ADD_WAY_MOBILE if by_staff else ADD_WAY_CARD)),
        state=str(body.get("state") or ""),
        oper_userid=userid if by_staff else customer.external_userid,
        event="add_half_external_contact" if body.get("half") else "add_external_contact",
    )


def complete_transfer(world: World, corp: Corp, transfer: Transfer) -> None:
    now = world.now()
    customer = corp.customers.get(transfer.external_userid)
    old = customer.follows.get(transfer.handover_userid) if customer else None
    if customer is None or old is None or corp.active_staff(transfer.takeover_userid) is None:
        transfer.status = 3
        return
    corp.remove_follow(customer, transfer.handover_userid)
    if transfer.takeover_userid not in customer.follows:
        corp.add_follow(
            customer,
            Follow(
                userid=transfer.takeover_userid,
                createtime=now,
                add_way=ADD_WAY_ASSIGNED,
                oper_userid=transfer.handover_userid,
                remark=old.remark,
                description=old.description,
                remark_corp_name=old.remark_corp_name,
                remark_mobiles=list(old.remark_mobiles),
                tags=list(old.tags),
            ),
        )
    transfer.status = 1
    transfer.takeover_time = now
    if transfer.kind == "onjob":
        xml.emit(
            world,
            corp,
            xml.external_contact_xml(
                corp.corp_id,
                now,
                "del_external_contact",
                transfer.handover_userid,
                transfer.external_userid,
                source="DELETE_BY_TRANSFER",
            ),
            "change_external_contact",
            "del_external_contact",
        )
    xml.emit(
        world,
        corp,
        xml.external_contact_xml(
            corp.corp_id,
            now,
            "add_external_contact",
            transfer.takeover_userid,
            transfer.external_userid,
        ),
        "change_external_contact",
        "add_external_contact",
    )


def _matching_transfers(corp: Corp, body: dict[str, Any]) -> list[Transfer]:
    return [
        t
        for t in corp.transfers
        if t.status == 2
        and body.get("external_userid") in (None, t.external_userid)
        and body.get("handover_userid") in (None, t.handover_userid)
        and body.get("takeover_userid") in (None, t.takeover_userid)
    ]


def complete_transfers(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    done = _matching_transfers(corp, body)
    for transfer in done:
        complete_transfer(world, corp, transfer)
    return {"completed": [t.external_userid for t in done if t.status == 1]}


def refuse_transfer(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """The customer refuses the new member (or the member is full): ``transfer_fail``."""
    reason = body.get("reason", "customer_refused")
    refused = _matching_transfers(corp, body)
    for transfer in refused:
        transfer.status = 4 if reason == "customer_limit_exceed" else 3
        xml.emit(
            world,
            corp,
            xml.external_contact_xml(
                corp.corp_id,
                world.now(),
                "transfer_fail",
                transfer.takeover_userid,
                transfer.external_userid,
                fail_reason=reason,
            ),
            "change_external_contact",
            "transfer_fail",
        )
    return {"refused": [t.external_userid for t in refused]}


# --- mass messages and Moments -----------------------------------------------------------------
def confirm_mass_message(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """The sending member taps "send" in the client: recipients get the message."""
    message = corp.mass_messages.get(body.get("msgid") or "")
    if message is None:
        raise EmulatorError(f"no mass message {body.get('msgid')!r}", 404)
    if message.cancelled:
        raise EmulatorError("the mass message was cancelled", 409)
    userid = body.get("userid") or ""
    sender = message.senders.get(userid)
    if sender is None:
        raise EmulatorError(f"{userid!r} is not a sender of {message.msgid}", 404)
    if sender.status == 2:
        raise EmulatorError(f"{userid!r} already sent {message.msgid}", 409)
    now = world.now()
    skip = set(body.get("skip") or [])
    limit = corp.settings.mass_per_customer_per_day
    sent_to = {r.external_userid for r in message.recipients if r.status == 1}
    counts = {"sent": 0, "not_friend": 0, "already_received": 0, "skipped": 0}
    for recipient in message.recipients:
        if recipient.userid != userid:
            continue
        if message.chat_type == "group":
            group = corp.groups.get(recipient.chat_id)
            if group is None or group.dismissed or group.owner != userid:
                recipient.status = 2
                counts["not_friend"] += 1
                continue
            recipient.status, recipient.send_time = 1, now
            counts["sent"] += 1
            continue
        external_userid = recipient.external_userid
        if external_userid in skip:
            counts["skipped"] += 1
            continue
        if corp.follow(userid, external_userid) is None:
            recipient.status = 2
            counts["not_friend"] += 1
            continue
        received = [t for t in corp.mass_received.get(external_userid, []) if now - t < 86400]
        if external_userid in sent_to or (limit and len(received) >= limit):
            recipient.status = 3
            counts["already_received"] += 1
            continue
        recipient.status, recipient.send_time = 1, now
        sent_to.add(external_userid)
        corp.mass_received[external_userid] = [*received, now]
        corp.record_staff_message(userid, external_userid, now)
        counts["sent"] += 1
    sender.status, sender.send_time = 2, now
    return {"msgid": message.msgid, "userid": userid, **counts}


def publish_moment(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    moment_id = body.get("moment_id") or ""
    job = next((j for j in corp.moment_jobs.values() if j.moment_id == moment_id), None)
    if job is None:
        raise EmulatorError(f"no moment {moment_id!r}", 404)
    userid = body.get("userid") or ""
    if userid not in job.senders:
        raise EmulatorError(f"{userid!r} is not asked to publish {moment_id}", 404)
    job.published[userid] = world.now()
    return {"moment_id": moment_id, "userid": userid}


# --- groups ------------------------------------------------------------------------------------
def member_version(group: GroupChat) -> str:
    return hashlib.md5("|".join(sorted(group.members)).encode()).hexdigest()


def _group(corp: Corp, chat_id: str) -> GroupChat:
    group = corp.groups.get(chat_id)
    if group is None or group.dismissed:
        raise EmulatorError(f"no group {chat_id!r}", 404)
    return group


def _member(world: World, corp: Corp, spec: Any) -> tuple[str, int, str, str]:
    """(id, type, name, unionid) for ``"userid"``, ``"wm…"`` or ``{customer fields}``."""
    if isinstance(spec, dict):
        if spec.get("userid"):
            staff = active_staff(corp, spec["userid"])
            return staff.userid, 1, staff.name, ""
        customer = resolve_customer(
            world, corp, {"external_userid": spec.get("external_userid"), "customer": spec}
        )
        return customer.external_userid, 2, customer.name, customer.unionid
    spec = str(spec)
    if spec in corp.staff:
        staff = active_staff(corp, spec)
        return staff.userid, 1, staff.name, ""
    customer = corp.customers.get(spec)
    if customer is None:
        raise EmulatorError(f"no member or customer {spec!r}", 404)
    return customer.external_userid, 2, customer.name, customer.unionid


def create_group(world: World, corp: Corp, body: dict[str, Any]) -> GroupChat:
    owner = active_staff(corp, body.get("owner") or "")
    now = world.now()
    chat_id = body.get("chat_id") or world.ids.chat_id()
    if chat_id in corp.groups:
        raise EmulatorError(f"group {chat_id} exists", 409)
    group = GroupChat(
        chat_id=chat_id,
        name=str(body.get("name") or ""),
        owner=owner.userid,
        create_time=now,
        notice=str(body.get("notice") or ""),
        admin_list=[a for a in body.get("admin_list") or [] if a in corp.staff],
    )
    group.members[owner.userid] = GroupMember(owner.userid, 1, now, 1, name=owner.name)
    for spec in body.get("members") or []:
        member_id, kind, name, unionid = _member(world, corp, spec)
        if member_id not in group.members:
            group.members[member_id] = GroupMember(
                member_id, kind, now, 1, invitor=owner.userid, name=name, unionid=unionid
            )
    if len(group.members) > corp.settings.group_max_members:
        raise EmulatorError(f"a group holds at most {corp.settings.group_max_members} members")
    group.member_version = member_version(group)
    corp.groups[chat_id] = group
    xml.emit(
        world,
        corp,
        xml.external_chat_xml(corp.corp_id, now, chat_id, "create"),
        "change_external_chat",
        "create",
        chat_id=chat_id,
    )
    return group


def _join_limit(corp: Corp, scene: int) -> int:
    limit = corp.settings.group_max_members
    return min(limit, corp.settings.qr_join_limit) if scene == 3 else limit


def _group_for_join_way(world: World, corp: Corp, way: JoinWay, count: int) -> GroupChat:
    limit = _join_limit(corp, 3)
    for chat_id in way.chat_id_list:
        group = corp.groups.get(chat_id)
        if group is not None and not group.dismissed and len(group.members) + count <= limit:
            return group
    if not way.auto_create_room:
        raise EmulatorError("every group of the join way is full", 409)
    template = next((corp.groups[c] for c in way.chat_id_list if c in corp.groups), None)
    if template is None:
        raise EmulatorError("the join way has no group to copy", 409)
    name = f"{way.room_base_name or template.name}{way.room_base_id}"
    way.room_base_id += 1
    group = create_group(
        world, corp, {"owner": template.owner, "name": name, "admin_list": template.admin_list}
    )
    way.chat_id_list.append(group.chat_id)
    while len(way.chat_id_list) > 5:  # keep the newest five; the full ones go first
        full = next(
            (
                c
                for c in way.chat_id_list
                if c != group.chat_id
                and (c not in corp.groups or len(corp.groups[c].members) >= limit)
            ),
            way.chat_id_list[0],
        )
        way.chat_id_list.remove(full)
    return group


def join_group(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """Members join a group: invited, by invite link, or by scanning its (join-way) QR."""
    specs = body.get("members") or ([body["member"]] if body.get("member") is not None else [])
    if not specs:
        raise EmulatorError("give member or members")
    config_id = body.get("config_id") or (
        config_id_from(str(body["qr_code"])) if body.get("qr_code") else ""
    )
    state = ""
    if config_id:
        way = corp.join_ways.get(config_id)
        if way is None:
            raise EmulatorError(f"no join way {config_id!r}", 404)
        scene = JOIN_SCENES[body.get("scene") or "qr"]
        group = _group_for_join_way(world, corp, way, len(specs))
        state = way.state
    else:
        group = _group(corp, body.get("chat_id") or "")
        scene = JOIN_SCENES[body.get("scene") or "invite"]
    limit = _join_limit(corp, scene)
    now = world.now()
    invitor = body.get("invitor") or (group.owner if scene in (1, 2) else "")
    added: list[str] = []
    last = group.member_version
    for spec in specs:
        member_id, kind, name, unionid = _member(world, corp, spec)
        if member_id in group.members or member_id in added:
            continue
        if len(group.members) + 1 > limit:
            raise EmulatorError(f"group {group.chat_id} is full ({limit})", 409)
        group.members[member_id] = GroupMember(
            member_id,
            kind,
            now,
            scene,
            invitor=invitor if scene in (1, 2) else "",
            name=name,
            unionid=unionid,
            state=state,
        )
        added.append(member_id)
    if added:
        group.member_version = member_version(group)
        xml.emit(
            world,
            corp,
            xml.external_chat_xml(
                corp.corp_id,
                now,
                group.chat_id,
                "update",
                update_detail="add_member",
                join_scene=CALLBACK_JOIN_SCENE[scene],
                members=added,
                last_mem_ver=last,
                cur_mem_ver=group.member_version,
            ),
            "change_external_chat",
            "update",
            update_detail="add_member",
            chat_id=group.chat_id,
        )
    return {"chat_id": group.chat_id, "added": added, "member_count": len(group.members)}


def leave_group(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    group = _group(corp, body.get("chat_id") or "")
    specs = body.get("members") or ([body["member"]] if body.get("member") else [])
    removed = []
    last = group.member_version
    for member_id in specs:
        if member_id == group.owner:
            raise EmulatorError("the owner cannot leave; dismiss the group", 409)
        if group.members.pop(member_id, None) is not None:
            removed.append(member_id)
    if removed:
        group.member_version = member_version(group)
        xml.emit(
            world,
            corp,
            xml.external_chat_xml(
                corp.corp_id,
                world.now(),
                group.chat_id,
                "update",
                update_detail="del_member",
                quit_scene=1 if body.get("removed") else 0,
                members=removed,
                last_mem_ver=last,
                cur_mem_ver=group.member_version,
            ),
            "change_external_chat",
            "update",
            update_detail="del_member",
            chat_id=group.chat_id,
        )
    return {"chat_id": group.chat_id, "removed": removed, "member_count": len(group.members)}


def update_group(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    group = _group(corp, body.get("chat_id") or "")
    now = world.now()
    changes = []
    if body.get("name") is not None and body["name"] != group.name:
        group.name = str(body["name"])
        changes.append("change_name")
    if body.get("notice") is not None and body["notice"] != group.notice:
        group.notice = str(body["notice"])
        changes.append("change_notice")
    if body.get("owner") and body["owner"] != group.owner:
        owner = active_staff(corp, body["owner"])
        if owner.userid not in group.members:
            group.members[owner.userid] = GroupMember(owner.userid, 1, now, 1, name=owner.name)
            group.member_version = member_version(group)
        group.owner = owner.userid
        changes.append("change_owner")
    for detail in changes:
        xml.emit(
            world,
            corp,
            xml.external_chat_xml(corp.corp_id, now, group.chat_id, "update", update_detail=detail),
            "change_external_chat",
            "update",
            update_detail=detail,
            chat_id=group.chat_id,
        )
    return {"chat_id": group.chat_id, "changes": changes}


def group_message(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    group = _group(corp, body.get("chat_id") or "")
    sender = body.get("sender") or ""
    if sender not in group.members:
        raise EmulatorError(f"{sender!r} is not in group {group.chat_id}", 404)
    count = int(body.get("count") or 1)
    corp.record_group_message(group.chat_id, sender, world.now(), count)
    return {"chat_id": group.chat_id, "sender": sender, "count": count}


def dismiss_group(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    group = _group(corp, body.get("chat_id") or "")
    now = world.now()
    group.dismissed, group.dismissed_at = True, now
    xml.emit(
        world,
        corp,
        xml.external_chat_xml(corp.corp_id, now, group.chat_id, "dismiss"),
        "change_external_chat",
        "dismiss",
        chat_id=group.chat_id,
    )
    return {"chat_id": group.chat_id}


# --- corp tags edited in the WeCom client ------------------------------------------------------
def _emit_tag(world: World, corp: Corp, change: str, item_id: str, tag_type: str | None) -> None:
    xml.emit(
        world,
        corp,
        xml.external_tag_xml(corp.corp_id, world.now(), change, item_id, tag_type=tag_type),
        "change_external_tag",
        change,
        id=item_id,
    )


def client_tag_change(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    action = body.get("action")
    now = world.now()
    if action == "create":
        names = [str(n) for n in body.get("tags") or []]
        if not names:
            raise EmulatorError("give tags (names)")
        group = corp.tag_groups.get(body.get("group_id") or "")
        created_group = False
        if group is None:
            if not body.get("group_name"):
                raise EmulatorError("give group_id or group_name")
            group = next(
                (g for g in corp.tag_groups.values() if g.group_name == body["group_name"]), None
            )
        if group is None:
            group = TagGroup(world.ids.tag_id(), str(body["group_name"]), now)
            corp.tag_groups[group.group_id] = group
            created_group = True
        new_ids = []
        for name in names:
            if any(t.name == name for t in group.tags.values()):
                raise EmulatorError(f"tag {name!r} exists in {group.group_name!r}", 409)
            tag = Tag(world.ids.tag_id(), name, now)
            group.tags[tag.id] = tag
            corp.tag_index[tag.id] = group.group_id
            new_ids.append(tag.id)
        if created_group:
            _emit_tag(world, corp, "create", group.group_id, "tag_group")
        else:
            for tag_id in new_ids:
                _emit_tag(world, corp, "create", tag_id, "tag")
        return {"group_id": group.group_id, "tag_ids": new_ids}
    if action == "update":
        item_id = body.get("id") or ""
        if item_id in corp.tag_groups:
            group = corp.tag_groups[item_id]
            group.group_name = str(body.get("name") or group.group_name)
            group.order = int(body.get("order", group.order))
            _emit_tag(world, corp, "update", item_id, "tag_group")
        else:
            found = corp.tag(item_id)
            if found is None:
                raise EmulatorError(f"no tag {item_id!r}", 404)
            tag = found[1]
            tag.name = str(body.get("name") or tag.name)
            tag.order = int(body.get("order", tag.order))
            _emit_tag(world, corp, "update", item_id, "tag")
        return {"id": item_id}
    if action == "delete":
        item_id = body.get("id") or ""
        if item_id in corp.tag_groups:
            group = corp.tag_groups.pop(item_id)
            corp.forget_tags(set(group.tags))
            _emit_tag(world, corp, "delete", item_id, "tag_group")
        else:
            found = corp.tag(item_id)
            if found is None:
                raise EmulatorError(f"no tag {item_id!r}", 404)
            group = found[0]
            del group.tags[item_id]
            corp.forget_tags({item_id})
            _emit_tag(world, corp, "delete", item_id, "tag")
            if not group.tags:
                del corp.tag_groups[group.group_id]
                _emit_tag(world, corp, "delete", group.group_id, "tag_group")
        return {"id": item_id}
    if action == "shuffle":
        group_id = body.get("group_id") or ""
        groups = [corp.tag_groups[group_id]] if group_id in corp.tag_groups else []
        if group_id and not groups:
            raise EmulatorError(f"no tag group {group_id!r}", 404)
        # reverse the displayed order (a larger order is shown first)
        items = list(groups[0].tags.values()) if groups else list(corp.tag_groups.values())
        for position, item in enumerate(sorted(items, key=lambda i: -i.order)):
            item.order = position + 1
        xml.emit(
            world,
            corp,
            xml.external_tag_xml(corp.corp_id, now, "shuffle", group_id),
            "change_external_tag",
            "shuffle",
            id=group_id,
        )
        return {"group_id": group_id}
    raise EmulatorError("action must be create, update, delete or shuffle")


# --- the address book ------------------------------------------------------------------------
def _join(values: list[Any]) -> str:
    return ",".join(str(v) for v in values)


def add_department(world: World, corp: Corp, body: dict[str, Any]) -> Department:
    dept_id = int(body.get("id") or (max(corp.departments, default=0) + 1))
    if dept_id in corp.departments:
        raise EmulatorError(f"department {dept_id} exists", 409)
    parent = int(body.get("parentid", 1 if dept_id != 1 else 0))
    if dept_id != 1 and parent not in corp.departments:
        raise EmulatorError(f"no parent department {parent}", 404)
    dept = Department(
        dept_id,
        str(body.get("name") or f"部门{dept_id}"),
        parent,
        int(body.get("order") or 0),
        str(body.get("name_en") or ""),
    )
    corp.departments[dept_id] = dept
    if not body.get("silent"):
        xml.emit(
            world,
            corp,
            xml.change_contact_xml(
                corp.corp_id,
                world.now(),
                "create_party",
                [
                    ("Id", dept.id),
                    ("Name", dept.name),
                    ("ParentId", dept.parentid),
                    ("Order", dept.order),
                ],
            ),
            "change_contact",
            "create_party",
        )
    return dept


def update_department(world: World, corp: Corp, body: dict[str, Any]) -> Department:
    dept = corp.departments.get(int(body.get("id") or 0))
    if dept is None:
        raise EmulatorError(f"no department {body.get('id')!r}", 404)
    fields: list[tuple[str, Any]] = [("Id", dept.id)]
    if body.get("name") is not None:
        dept.name = str(body["name"])
        fields.append(("Name", dept.name))
    if body.get("parentid") is not None:
        dept.parentid = int(body["parentid"])
        fields.append(("ParentId", dept.parentid))
    if body.get("order") is not None:
        dept.order = int(body["order"])
    if not body.get("silent"):
        xml.emit(
            world,
            corp,
            xml.change_contact_xml(corp.corp_id, world.now(), "update_party", fields),
            "change_contact",
            "update_party",
        )
    return dept


def delete_department(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    dept_id = int(body.get("id") or 0)
    if dept_id not in corp.departments:
        raise EmulatorError(f"no department {dept_id}", 404)
    if any(d.parentid == dept_id for d in corp.departments.values() if d.id != dept_id):
        raise EmulatorError("the department has sub-departments", 409)
    if any(dept_id in s.department for s in corp.staff.values() if not s.resigned_at):
        raise EmulatorError("the department has members", 409)
    del corp.departments[dept_id]
    if not body.get("silent"):
        xml.emit(
            world,
            corp,
            xml.change_contact_xml(corp.corp_id, world.now(), "delete_party", [("Id", dept_id)]),
            "change_contact",
            "delete_party",
        )
    return {"id": dept_id}


def _user_fields(staff: Staff) -> list[tuple[str, Any]]:
    return [
        ("UserID", staff.userid),
        ("Name", staff.name),
        ("Department", _join(staff.department)),
        ("MainDepartment", staff.main_department),
        ("IsLeaderInDept", _join(staff.is_leader_in_dept)),
        ("DirectLeader", _join(staff.direct_leader) or None),
        ("Position", staff.position),
        ("Mobile", staff.mobile or None),
        ("Gender", staff.gender),
        ("Email", staff.email or None),
        ("Status", staff.status),
        ("Avatar", staff.avatar),
        ("Alias", staff.alias),
    ]


STAFF_FIELDS = ("name", "position", "gender", "mobile", "email", "alias", "avatar")


def _leaders(value: Any) -> list[str]:
    """``direct_leader`` as WeCom stores it: a list of at most one userid."""
    if isinstance(value, str):
        value = value.split(",")
    leaders = [str(userid).strip() for userid in value or () if str(userid).strip()]
    if len(leaders) > 1:
        raise EmulatorError("WeCom allows one direct leader")
    return leaders


def add_staff(world: World, corp: Corp, body: dict[str, Any]) -> Staff:
    userid = str(body.get("userid") or "")
    if not userid:
        raise EmulatorError("give userid")
    existing = corp.staff.get(userid)
    if existing is not None and not existing.resigned_at:
        raise EmulatorError(f"staff {userid!r} exists", 409)
    departments = [int(d) for d in body.get("department") or [1]]
    for dept in departments:
        if dept not in corp.departments:
            raise EmulatorError(f"no department {dept}", 404)
    staff = Staff(
        userid=userid,
        name=str(body.get("name") or userid),
        department=departments,
        main_department=int(body.get("main_department") or departments[0]),
        is_leader_in_dept=[int(x) for x in body.get("is_leader_in_dept") or [0] * len(departments)],
        position=str(body.get("position") or ""),
        gender=str(body.get("gender") or "0"),
        mobile=str(body.get("mobile") or ""),
        email=str(body.get("email") or ""),
        alias=str(body.get("alias") or ""),
        avatar=str(body.get("avatar") or f"https://wework.qpic.cn/wwhead/{world.ids.chars(40)}/0"),
        status=int(body.get("status") or 1),
        created_at=world.now(),
        direct_leader=_leaders(body.get("direct_leader")),
    )
    corp.staff[userid] = staff
    if not body.get("silent"):
        xml.emit(
            world,
            corp,
            xml.change_contact_xml(corp.corp_id, world.now(), "create_user", _user_fields(staff)),
            "change_contact",
            "create_user",
        )
    return staff


def update_staff(world: World, corp: Corp, body: dict[str, Any]) -> Staff:
    staff = corp.staff.get(str(body.get("userid") or ""))
    if staff is None or staff.resigned_at:
        raise EmulatorError(f"no staff {body.get('userid')!r}", 404)
    if body.get("new_userid") and body["new_userid"] != staff.userid:
        raise EmulatorError("changing a userid is not emulated", 501)
    fields: list[tuple[str, Any]] = [("UserID", staff.userid)]
    for name in STAFF_FIELDS:
        if body.get(name) is not None:
            setattr(staff, name, str(body[name]))
            fields.append((name.capitalize(), getattr(staff, name)))
    if body.get("department") is not None:
        departments = [int(d) for d in body["department"]]
        for dept in departments:
            if dept not in corp.departments:
                raise EmulatorError(f"no department {dept}", 404)
        staff.department = departments
        staff.main_department = int(body.get("main_department") or departments[0])
        staff.is_leader_in_dept = [0] * len(departments)
        fields += [
            ("Department", _join(departments)),
            ("MainDepartment", staff.main_department),
            ("IsLeaderInDept", _join(staff.is_leader_in_dept)),
        ]
    if body.get("status") is not None:
        staff.status = int(body["status"])
        fields.append(("Status", staff.status))
    if body.get("direct_leader") is not None:
        staff.direct_leader = _leaders(body["direct_leader"])
        fields.append(("DirectLeader", _join(staff.direct_leader)))
    if not body.get("silent"):
        xml.emit(
            world,
            corp,
            xml.change_contact_xml(corp.corp_id, world.now(), "update_user", fields),
            "change_contact",
            "update_user",
        )
    return staff


def delete_staff(world: World, corp: Corp, body: dict[str, Any]) -> dict[str, Any]:
    """The member leaves the corp: their customers and groups wait for a resigned transfer."""
    staff = corp.staff.get(str(body.get("userid") or ""))
    if staff is None or staff.resigned_at:
        raise EmulatorError(f"no staff {body.get('userid')!r}", 404)
    staff.resigned_at = world.now()
    staff.status = 5
    if not body.get("silent"):
        xml.emit(
            world,
            corp,
            xml.change_contact_xml(
                corp.corp_id, world.now(), "delete_user", [("UserID", staff.userid)]
            ),
            "change_contact",
            "delete_user",
        )
    return {"userid": staff.userid, "customers": len(corp.by_user.get(staff.userid, {}))}
