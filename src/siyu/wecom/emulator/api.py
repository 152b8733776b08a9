"""The WeCom server API (``/cgi-bin/...``) as the emulator answers it.

Each handler takes a ``Call`` (the world, the corp and app behind the access token, the
query, the JSON body) and returns the fields of WeCom's answer besides ``errcode`` and
``errmsg``, or raises ``ApiError`` with WeCom's errcode. ``app.py`` checks the token, the
rate limit and injected faults before, and holds the world's lock around, each handler.

Request and response field names, limits and errcodes follow Tencent's documentation of
each endpoint (see docs/wecom.md for the deviations known).
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from siyu.wecom.emulator import errcodes as e
from siyu.wecom.emulator.errcodes import ApiError
from siyu.wecom.emulator.physics import settle, staff_pool
from siyu.wecom.emulator.state import (
    DAY,
    App,
    ContactWay,
    Corp,
    Customer,
    Follow,
    GroupChat,
    JoinWay,
    MassMessage,
    MassRecipient,
    MassSender,
    Media,
    MomentJob,
    Staff,
    Tag,
    TagGroup,
    Transfer,
    World,
    day_key,
    day_start,
)


@dataclass
class Call:
    world: World
    corp: Corp
    app: App
    query: Mapping[str, str]
    body: dict[str, Any]
    base_url: str
    now: int
    client_ip: str = "127.0.0.1"
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


Handler = Callable[[Call], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str  # how WeCom documents it: GET (query) or POST (JSON body)
    handler: Handler
    scope: str  # "contact": customer-contact secret or an app allowed to call it; "any"


ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(
    path: str, method: str = "POST", scope: str = "contact"
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ENDPOINTS[path] = Endpoint(path, method, handler, scope)
        return handler

    return register


# --- parameters --------------------------------------------------------------------------------
def text(
    source: Mapping[str, Any],
    name: str,
    *,
    missing: int = e.INVALID_PARAMETER,
    required: bool = True,
    max_length: int | None = None,
) -> str:
    value = source.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(missing, f"{name} missing")
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ApiError(e.INVALID_PARAMETER, f"{name} must be a string")
    value = str(value)
    if max_length is not None and len(value) > max_length:
        raise ApiError(e.INVALID_PARAMETER, f"{name} exceeds {max_length} characters")
    return value


def integer(
    source: Mapping[str, Any],
    name: str,
    default: int | None = None,
    *,
    missing: int = e.INVALID_PARAMETER,
    invalid: int = e.INVALID_PARAMETER,
) -> int:
    value = source.get(name)
    if value is None or value == "":
        if default is None:
            raise ApiError(missing, f"{name} missing")
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(invalid, f"{name} must be an integer") from None


def strings(
    source: Mapping[str, Any], name: str, *, max_items: int | None = None, required: bool = False
) -> list[str]:
    value = source.get(name)
    if value is None or value == []:
        if required:
            raise ApiError(e.INVALID_PARAMETER, f"{name} missing")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(e.INVALID_PARAMETER, f"{name} must be a list of strings")
    if max_items is not None and len(value) > max_items:
        raise ApiError(e.INVALID_PARAMETER, f"{name} holds more than {max_items} items")
    return value


def integers(source: Mapping[str, Any], name: str) -> list[int]:
    value = source.get(name) or []
    if not isinstance(value, list):
        raise ApiError(e.INVALID_PARAMETER, f"{name} must be a list")
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ApiError(e.INVALID_PARAMETER, f"{name} must be a list of integers") from None


def obj(source: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = source.get(name) or {}
    if not isinstance(value, dict):
        raise ApiError(e.INVALID_PARAMETER, f"{name} must be an object")
    return value


def page_size(source: Mapping[str, Any], name: str, default: int, maximum: int) -> int:
    """WeCom takes the maximum when asked for more, and the default for 0 or none."""
    size = integer(source, name, default)
    return default if size <= 0 else min(size, maximum)


def encode_cursor(*parts: Any) -> str:
    raw = ":".join(str(p) for p in parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = [int(p) for p in raw.split(":")]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(e.INVALID_PARAMETER, "invalid cursor") from None
    if len(parts) != count or any(p < 0 for p in parts):
        raise ApiError(e.INVALID_PARAMETER, "invalid cursor")
    return parts


def offset_page(items: list[Any], cursor: str, limit: int) -> tuple[list[Any], str]:
    start = decode_cursor(cursor, 1)[0] if cursor else 0
    page = items[start : start + limit]
    end = start + len(page)
    return page, encode_cursor(end) if end < len(items) else ""


def staff_member(corp: Corp, userid: str, *, code: int = e.INVALID_USERID) -> Staff:
    staff = corp.active_staff(userid)
    if staff is None:
        raise ApiError(code, f"userid {userid!r}")
    return staff


def customer_of(corp: Corp, external_userid: str) -> Customer:
    customer = corp.customers.get(external_userid)
    if customer is None:
        raise ApiError(e.INVALID_EXTERNAL_USERID, f"external_userid {external_userid!r}")
    return customer


def follow_of(corp: Corp, body: Mapping[str, Any]) -> tuple[Customer, Follow]:
    userid = text(body, "userid", missing=e.MISSING_USERID)
    external_userid = text(body, "external_userid", missing=e.MISSING_EXTERNAL_USERID)
    staff_member(corp, userid)
    customer = customer_of(corp, external_userid)
    follow = customer.follows.get(userid)
    if follow is None:
        raise ApiError(e.NOT_EXTERNAL_CONTACT)
    return customer, follow


# --- attachments -------------------------------------------------------------------------------
ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")


def check_media(call: Call, media_id: str) -> None:
    media = call.corp.media.get(media_id)
    if media is None or call.now > media.created_at + call.corp.settings.media_ttl:
        raise ApiError(e.INVALID_MEDIA_ID, f"media_id {media_id!r}")


def check_attachments(
    call: Call, attachments: Any, *, types: tuple[str, ...] = ATTACHMENT_TYPES, limit: int = 9
) -> list[dict[str, Any]]:
    if attachments is None:
        return []
    if not isinstance(attachments, list):
        raise ApiError(e.INVALID_PARAMETER, "attachments must be a list")
    if len(attachments) > limit:
        raise ApiError(e.TOO_MANY_ATTACHMENTS)
    for attachment in attachments:
        kind = attachment.get("msgtype") if isinstance(attachment, dict) else None
        if kind not in types:
            raise ApiError(e.INVALID_ATTACHMENT_TYPE, f"msgtype {kind!r}")
        payload = attachment.get(kind)
        if not isinstance(payload, dict):
            raise ApiError(e.INVALID_PARAMETER, f"{kind} missing")
        if kind == "link":
            if not payload.get("title") or not payload.get("url"):
                raise ApiError(e.INVALID_PARAMETER, "link needs title and url")
            if payload.get("media_id"):
                check_media(call, payload["media_id"])
        elif kind == "miniprogram":
            for name in ("title", "pic_media_id", "appid", "page"):
                if not payload.get(name):
                    raise ApiError(e.INVALID_PARAMETER, f"miniprogram.{name} missing")
            check_media(call, payload["pic_media_id"])
        elif kind == "image" and payload.get("pic_url") and not payload.get("media_id"):
            continue
        else:
            if not payload.get("media_id"):
                raise ApiError(e.INVALID_PARAMETER, f"{kind}.media_id missing")
            check_media(call, payload["media_id"])
    return attachments


# --- JSON shapes -------------------------------------------------------------------------------
def customer_json(customer: Customer) -> dict[str, Any]:
    data: dict[str, Any] = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "type": customer.type,
        "avatar": customer.avatar,
        "gender": customer.gender,
    }
    if customer.type == 1 and customer.unionid:
        data["unionid"] = customer.unionid
    if customer.type == 2:
        data["position"] = customer.position
        data["corp_name"] = customer.corp_name
        data["corp_full_name"] = customer.corp_full_name
    return data


def _follow_common(follow: Follow) -> dict[str, Any]:
    data: dict[str, Any] = {
        "userid": follow.userid,
        "remark": follow.remark,
        "description": follow.description,
        "createtime": follow.createtime,
    }
    return data


def _follow_tail(follow: Follow, data: dict[str, Any]) -> dict[str, Any]:
    if follow.remark_corp_name:
        data["remark_corp_name"] = follow.remark_corp_name
    data["remark_mobiles"] = list(follow.remark_mobiles)
    data["oper_userid"] = follow.oper_userid
    data["add_way"] = follow.add_way
    if follow.state:
        data["state"] = follow.state
    return data


def follow_user_json(corp: Corp, follow: Follow) -> dict[str, Any]:
    """A ``follow_user`` item of externalcontact/get (tags with their names)."""
    data = _follow_common(follow)
    tags = []
    for tag_id in follow.tags:
        found = corp.tag(tag_id)
        if found is not None:
            group, tag = found
            tags.append(
                {"group_name": group.group_name, "tag_name": tag.name, "type": 1, "tag_id": tag_id}
            )
    data["tags"] = tags
    return _follow_tail(follow, data)


def follow_info_json(follow: Follow) -> dict[str, Any]:
    """A ``follow_info`` item of batch/get_by_user (tag ids only)."""
    data = _follow_common(follow)
    data["tag_id"] = list(follow.tags)
    return _follow_tail(follow, data)


def user_json(staff: Staff) -> dict[str, Any]:
    return {
        "userid": staff.userid,
        "name": staff.name,
        "department": list(staff.department),
        "order": [0] * len(staff.department),
        "position": staff.position,
        "mobile": staff.mobile,
        "gender": staff.gender,
        "email": staff.email,
        "is_leader_in_dept": list(staff.is_leader_in_dept),
        "direct_leader": list(staff.direct_leader),
        "avatar": staff.avatar,
        "thumb_avatar": staff.avatar,
        "telephone": "",
        "alias": staff.alias,
        "status": staff.status,
        "main_department": staff.main_department,
        "extattr": {"attrs": []},
        "qr_code": "",
        "external_position": "",
        "address": "",
    }


def tag_json(tag: Tag) -> dict[str, Any]:
    return {"id": tag.id, "name": tag.name, "create_time": tag.create_time, "order": tag.order}


def _ordered(items: list[Any]) -> list[Any]:
    # WeCom: a larger order comes first; equal orders keep creation order.
    return sorted(items, key=lambda item: -item.order)


# --- address book ------------------------------------------------------------------------------
@endpoint("user/list", "GET", scope="any")
def user_list(call: Call) -> dict[str, Any]:
    corp = call.corp
    department_id = integer(call.query, "department_id")
    if department_id not in corp.departments:
        raise ApiError(e.DEPARTMENT_NOT_FOUND)
    wanted = set(
        corp.department_and_children(department_id)
        if call.query.get("fetch_child") == "1"
        else [department_id]
    )
    users = [
        user_json(s)
        for s in corp.staff.values()
        if not s.resigned_at and wanted.intersection(s.department)
    ]
    return {"userlist": users}


@endpoint("user/get", "GET", scope="any")
def user_get(call: Call) -> dict[str, Any]:
    userid = text(call.query, "userid", missing=e.MISSING_USERID)
    staff = call.corp.staff.get(userid)
    if staff is None or staff.resigned_at:
        raise ApiError(e.USERID_NOT_FOUND)
    return user_json(staff)


@endpoint("department/list", "GET", scope="any")
def department_list(call: Call) -> dict[str, Any]:
    corp = call.corp
    if call.query.get("id"):
        root = integer(call.query, "id")
        if root not in corp.departments:
            raise ApiError(e.DEPARTMENT_NOT_FOUND)
        ids = corp.department_and_children(root)
    else:
        ids = list(corp.departments)
    return {
        "department": [
            {
                "id": d.id,
                "name": d.name,
                "name_en": d.name_en,
                "department_leader": [],
                "parentid": d.parentid,
                "order": d.order,
            }
            for d in sorted((corp.departments[i] for i in ids), key=lambda d: d.id)
        ]
    }


# --- customers ---------------------------------------------------------------------------------
@endpoint("externalcontact/get_follow_user_list", "GET")
def get_follow_user_list(call: Call) -> dict[str, Any]:
    return {"follow_user": [s.userid for s in call.corp.staff.values() if s.active]}


@endpoint("externalcontact/list", "GET")
def external_list(call: Call) -> dict[str, Any]:
    userid = text(call.query, "userid", missing=e.MISSING_USERID)
    staff_member(call.corp, userid)
    external_userids = list(call.corp.by_user.get(userid, {}))
    if not external_userids:
        raise ApiError(e.NOT_EXTERNAL_CONTACT)  # WeCom's answer for a member without customers
    return {"external_userid": external_userids}


FOLLOW_PAGE = 500


@endpoint("externalcontact/get", "GET")
def external_get(call: Call) -> dict[str, Any]:
    corp = call.corp
    customer = customer_of(
        corp, text(call.query, "external_userid", missing=e.MISSING_EXTERNAL_USERID)
    )
    follows = [f for f in customer.follows.values() if corp.active_staff(f.userid)]
    if not follows:
        raise ApiError(e.NOT_EXTERNAL_CONTACT)
    page, next_cursor = offset_page(follows, call.query.get("cursor", ""), FOLLOW_PAGE)
    data: dict[str, Any] = {
        "external_contact": customer_json(customer),
        "follow_user": [follow_user_json(corp, f) for f in page],
    }
    if next_cursor:
        data["next_cursor"] = next_cursor
    return data


@endpoint("externalcontact/batch/get_by_user")
def batch_get_by_user(call: Call) -> dict[str, Any]:
    corp = call.corp
    body = call.body
    userids = strings(body, "userid_list", max_items=100)
    if not userids:
        if body.get("userid"):  # the older single-member form
            userids = [text(body, "userid")]
        else:
            raise ApiError(e.MISSING_USERID, "userid_list missing")
    for userid in userids:
        staff_member(corp, userid)
    limit = page_size(body, "limit", 50, 100)
    cursor = text(body, "cursor", required=False)
    index, after = decode_cursor(cursor, 2) if cursor else (0, 0)
    items: list[dict[str, Any]] = []
    while index < len(userids) and len(items) < limit:
        seqs, external_userids = corp.user_list(userids[index])
        start = bisect_right(seqs, after)
        end = min(len(seqs), start + limit - len(items))
        for position in range(start, end):
            customer = corp.customers[external_userids[position]]
            items.append(
                {
                    "external_contact": customer_json(customer),
                    "follow_info": follow_info_json(customer.follows[userids[index]]),
                }
            )
        if end < len(seqs):
            after = seqs[end - 1]
            break
        index, after = index + 1, 0
    more = any(
        bisect_right(corp.user_list(userids[i])[0], after if i == index else 0)
        < len(corp.user_list(userids[i])[0])
        for i in range(index, len(userids))
    )
    return {
        "external_contact_list": items,
        "next_cursor": encode_cursor(index, after) if more else "",
    }


@endpoint("externalcontact/remark")
def remark(call: Call) -> dict[str, Any]:
    body = call.body
    _, follow = follow_of(call.corp, body)
    names = ("remark", "description", "remark_company", "remark_mobiles", "remark_pic_mediaid")
    if all(body.get(n) in (None, "", []) for n in names):
        raise ApiError(e.INVALID_PARAMETER, "nothing to change")
    if body.get("remark") is not None:
        follow.remark = text(body, "remark", required=False, max_length=20)
    if body.get("description") is not None:
        follow.description = text(body, "description", required=False, max_length=150)
    if body.get("remark_company") is not None:
        follow.remark_corp_name = text(body, "remark_company", required=False, max_length=20)
    if body.get("remark_mobiles") is not None:
        mobiles = strings(body, "remark_mobiles")
        follow.remark_mobiles = [m for m in mobiles if m]  # [""] clears them
    if body.get("remark_pic_mediaid"):
        check_media(call, body["remark_pic_mediaid"])
    return {}


# --- corp tags ---------------------------------------------------------------------------------
def _echo_tag(call: Call, change: str, item_id: str, tag_type: str | None) -> None:
    """A ``change_external_tag`` callback for an API edit, if the corp asked for echoes."""
    if call.corp.settings.echo_api_changes:
        from siyu.wecom.emulator import callbacks as xml

        xml.emit(
            call.world,
            call.corp,
            xml.external_tag_xml(call.corp.corp_id, call.now, change, item_id, tag_type=tag_type),
            "change_external_tag",
            change,
            id=item_id,
        )


@endpoint("externalcontact/get_corp_tag_list")
def get_corp_tag_list(call: Call) -> dict[str, Any]:
    corp = call.corp
    group_ids = strings(call.body, "group_id")
    tag_ids = strings(call.body, "tag_id")
    groups = _ordered(list(corp.tag_groups.values()))
    result = []
    for group in groups:
        tags = _ordered(list(group.tags.values()))
        if group_ids:
            if group.group_id not in group_ids:
                continue
        elif tag_ids:
            tags = [t for t in tags if t.id in tag_ids]
            if not tags:
                continue
        result.append(
            {
                "group_id": group.group_id,
                "group_name": group.group_name,
                "create_time": group.create_time,
                "order": group.order,
                "tag": [tag_json(t) for t in tags],
            }
        )
    return {"tag_group": result}


def _tag_name(value: Any, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(e.INVALID_PARAMETER, f"{label} missing")
    if len(value) > 30:
        raise ApiError(e.INVALID_PARAMETER, f"{label} exceeds 30 characters")
    return value


@endpoint("externalcontact/add_corp_tag")
def add_corp_tag(call: Call) -> dict[str, Any]:
    corp, body, now = call.corp, call.body, call.now
    specs = body.get("tag")
    if not isinstance(specs, list) or not specs:
        raise ApiError(e.INVALID_PARAMETER, "tag missing")
    names = [_tag_name(s.get("name") if isinstance(s, dict) else None, "tag.name") for s in specs]
    orders = [integer(s, "order", 0) for s in specs]
    if len(set(names)) != len(names):
        raise ApiError(e.INVALID_TAG_NAME, "duplicate tag names")
    group: TagGroup | None = None
    if body.get("group_id"):
        group = corp.tag_groups.get(body["group_id"])
        if group is None:
            raise ApiError(e.INVALID_TAG, "group_id")
    else:
        group_name = _tag_name(body.get("group_name"), "group_name")
        group = next((g for g in corp.tag_groups.values() if g.group_name == group_name), None)
        if group is None:
            group = TagGroup(call.world.ids.tag_id(), group_name, now, integer(body, "order", 0))
    if any(t.name in names for t in group.tags.values()):
        raise ApiError(e.INVALID_TAG_NAME, "tag name exists in the group")
    if corp.tag_count() + len(names) > corp.settings.max_corp_tags:
        raise ApiError(e.TOO_MANY_TAGS)
    new_group = group.group_id not in corp.tag_groups
    corp.tag_groups.setdefault(group.group_id, group)
    created = []
    for name, order in zip(names, orders, strict=True):
        tag = Tag(call.world.ids.tag_id(), name, now, order)
        group.tags[tag.id] = tag
        corp.tag_index[tag.id] = group.group_id
        created.append(tag_json(tag))
    if new_group:
        _echo_tag(call, "create", group.group_id, "tag_group")
    else:
        for item in created:
            _echo_tag(call, "create", item["id"], "tag")
    return {
        "tag_group": {
            "group_id": group.group_id,
            "group_name": group.group_name,
            "create_time": group.create_time,
            "order": group.order,
            "tag": created,
        }
    }


@endpoint("externalcontact/edit_corp_tag")
def edit_corp_tag(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    item_id = text(body, "id", missing=e.INVALID_TAG)
    name = _tag_name(body["name"], "name") if body.get("name") is not None else None
    if item_id in corp.tag_groups:
        group = corp.tag_groups[item_id]
        if name and any(g.group_name == name for g in corp.tag_groups.values() if g is not group):
            raise ApiError(e.INVALID_TAG_NAME, "group name exists")
        group.group_name = name or group.group_name
        group.order = integer(body, "order", group.order)
        _echo_tag(call, "update", item_id, "tag_group")
        return {}
    found = corp.tag(item_id)
    if found is None:
        raise ApiError(e.INVALID_TAG)
    group, tag = found
    if name and any(t.name == name for t in group.tags.values() if t is not tag):
        raise ApiError(e.INVALID_TAG_NAME, "tag name exists in the group")
    tag.name = name or tag.name
    tag.order = integer(body, "order", tag.order)
    _echo_tag(call, "update", item_id, "tag")
    return {}


@endpoint("externalcontact/del_corp_tag")
def del_corp_tag(call: Call) -> dict[str, Any]:
    corp = call.corp
    tag_ids = strings(call.body, "tag_id")
    group_ids = strings(call.body, "group_id")
    if not tag_ids and not group_ids:
        raise ApiError(e.INVALID_TAG, "tag_id and group_id are both empty")
    for tag_id in tag_ids:
        if corp.tag(tag_id) is None:
            raise ApiError(e.INVALID_TAG, tag_id)
    for group_id in group_ids:
        if group_id not in corp.tag_groups:
            raise ApiError(e.INVALID_TAG, group_id)
    removed: set[str] = set()
    for group_id in group_ids:
        removed.update(corp.tag_groups.pop(group_id).tags)
    for tag_id in tag_ids:
        if tag_id in removed:
            continue
        group = corp.tag_groups[corp.tag_index[tag_id]]
        del group.tags[tag_id]
        removed.add(tag_id)
        if not group.tags:  # a group without tags is deleted with its last tag
            del corp.tag_groups[group.group_id]
    corp.forget_tags(removed)
    for group_id in group_ids:
        _echo_tag(call, "delete", group_id, "tag_group")
    for tag_id in tag_ids:
        _echo_tag(call, "delete", tag_id, "tag")
    return {}


@endpoint("externalcontact/mark_tag")
def mark_tag(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    _, follow = follow_of(corp, body)
    add = strings(body, "add_tag")
    remove = strings(body, "remove_tag")
    if not add and not remove:
        raise ApiError(e.INVALID_PARAMETER, "add_tag and remove_tag are both empty")
    for tag_id in add + remove:
        if corp.tag(tag_id) is None:
            raise ApiError(e.INVALID_TAG, tag_id)
    for tag_id in add:
        if tag_id not in follow.tags:
            follow.tags.append(tag_id)
    follow.tags = [t for t in follow.tags if t not in set(remove)]
    if corp.settings.echo_api_changes:
        from siyu.wecom.emulator import callbacks as xml

        customer, _follow = follow_of(corp, body)
        xml.emit(
            call.world,
            corp,
            xml.external_contact_xml(
                corp.corp_id,
                call.now,
                "edit_external_contact",
                body["userid"],
                customer.external_userid,
            ),
            "change_external_contact",
            "edit_external_contact",
        )
    return {}


# --- contact ways ------------------------------------------------------------------------------
def _qr_url(call: Call, kind: str, config_id: str) -> str:
    return f"{call.base_url}/qr/{kind}/{config_id}"


def _contact_way_people(call: Call, way_type: int, body: Mapping[str, Any]) -> tuple[list, list]:
    corp = call.corp
    user = strings(body, "user")
    party = integers(body, "party")
    for userid in user:
        staff_member(corp, userid)
    for dept in party:
        if dept not in corp.departments:
            raise ApiError(e.DEPARTMENT_NOT_FOUND, f"party {dept}")
    if way_type == 1:
        if len(user) != 1 or party:
            raise ApiError(e.INVALID_PARAMETER, "a single-member contact way takes one user")
    elif not user and not party:
        raise ApiError(e.INVALID_PARAMETER, "user and party are both empty")
    if len(staff_pool(corp, user, party)) > corp.settings.contact_way_max_users:
        raise ApiError(e.CONTACT_WAY_TOO_MANY_USERS)
    return user, party


def _contact_way_json(way: ContactWay) -> dict[str, Any]:
    data: dict[str, Any] = {
        "config_id": way.config_id,
        "type": way.type,
        "scene": way.scene,
        "style": way.style,
        "remark": way.remark,
        "skip_verify": way.skip_verify,
        "state": way.state,
        "user": list(way.user),
        "party": list(way.party),
        "is_temp": way.is_temp,
        "is_exclusive": way.is_exclusive,
        "mark_source": way.mark_source,
    }
    if way.scene == 2:
        data["qr_code"] = way.qr_code
    if way.is_temp:
        data.update(
            expires_in=way.expires_in,
            chat_expires_in=way.chat_expires_in,
            unionid=way.unionid,
            conclusions=way.conclusions,
        )
    return data


def _contact_way_options(way: ContactWay, body: Mapping[str, Any]) -> None:
    if body.get("style") is not None:
        way.style = integer(body, "style")
    if body.get("remark") is not None:
        way.remark = text(body, "remark", required=False, max_length=30)
    if body.get("skip_verify") is not None:
        way.skip_verify = bool(body["skip_verify"])
    if body.get("state") is not None:
        way.state = text(body, "state", required=False, max_length=30)
    if body.get("is_exclusive") is not None:
        way.is_exclusive = bool(body["is_exclusive"])
    if body.get("mark_source") is not None:
        way.mark_source = bool(body["mark_source"])
    if way.is_temp:
        way.expires_in = integer(body, "expires_in", way.expires_in or 7 * DAY)
        way.chat_expires_in = integer(body, "chat_expires_in", way.chat_expires_in or DAY)
        if not 0 < way.expires_in <= 14 * DAY or not 0 < way.chat_expires_in <= 14 * DAY:
            raise ApiError(e.INVALID_PARAMETER, "expires_in out of range")
        way.unionid = text(body, "unionid", required=False) or way.unionid
        if body.get("conclusions") is not None:
            way.conclusions = obj(body, "conclusions")


@endpoint("externalcontact/add_contact_way")
def add_contact_way(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    way_type = integer(
        body, "type", missing=e.MISSING_CONTACT_WAY_TYPE, invalid=e.INVALID_CONTACT_WAY_TYPE
    )
    if way_type not in (1, 2):
        raise ApiError(e.INVALID_CONTACT_WAY_TYPE)
    scene = integer(
        body, "scene", missing=e.MISSING_CONTACT_WAY_SCENE, invalid=e.INVALID_CONTACT_WAY_SCENE
    )
    if scene not in (1, 2):
        raise ApiError(e.INVALID_CONTACT_WAY_SCENE)
    user, party = _contact_way_people(call, way_type, body)
    is_temp = bool(body.get("is_temp"))
    if is_temp and way_type != 1:
        raise ApiError(e.INVALID_PARAMETER, "a temporary contact way takes one member")
    if len(corp.contact_ways) + len(corp.join_ways) >= corp.settings.contact_way_max_total:
        raise ApiError(e.CONTACT_WAY_LIMIT)
    config_id = call.world.ids.config_id()
    way = ContactWay(
        config_id=config_id,
        type=way_type,
        scene=scene,
        qr_code=_qr_url(call, "contact", config_id) if scene == 2 else "",
        user=user,
        party=party,
        is_temp=is_temp,
        created_at=call.now,
    )
    _contact_way_options(way, body)
    corp.contact_ways[config_id] = way
    data: dict[str, Any] = {"config_id": config_id}
    if scene == 2:
        data["qr_code"] = way.qr_code
    return data


def _contact_way(call: Call) -> ContactWay:
    config_id = text(call.body, "config_id", missing=e.MISSING_CONFIG_ID)
    way = call.corp.contact_ways.get(config_id)
    if way is None:
        raise ApiError(e.INVALID_CONFIG_ID)
    return way


@endpoint("externalcontact/get_contact_way")
def get_contact_way(call: Call) -> dict[str, Any]:
    return {"contact_way": _contact_way_json(_contact_way(call))}


@endpoint("externalcontact/update_contact_way")
def update_contact_way(call: Call) -> dict[str, Any]:
    way = _contact_way(call)
    body = call.body
    if body.get("user") is not None or body.get("party") is not None:
        people = {"user": body.get("user", way.user), "party": body.get("party", way.party)}
        way.user, way.party = _contact_way_people(call, way.type, people)
    _contact_way_options(way, body)
    return {}


@endpoint("externalcontact/del_contact_way")
def del_contact_way(call: Call) -> dict[str, Any]:
    way = _contact_way(call)
    del call.corp.contact_ways[way.config_id]
    return {}


# --- welcome messages --------------------------------------------------------------------------
@endpoint("externalcontact/send_welcome_msg")
def send_welcome_msg(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    code = text(body, "welcome_code", missing=e.MISSING_WELCOME_CODE)
    message_text = obj(body, "text")
    attachments = check_attachments(call, body.get("attachments"))
    if not message_text.get("content") and not attachments:
        raise ApiError(e.INVALID_PARAMETER, "text and attachments are both empty")
    welcome = corp.welcome_codes.get(code)
    if (
        welcome is None
        or welcome.used
        or call.now >= welcome.created_at + corp.settings.welcome_code_ttl
        or corp.follow(welcome.userid, welcome.external_userid) is None
    ):
        raise ApiError(e.INVALID_WELCOME_CODE)
    welcome.used = True
    corp.welcome_messages.append(
        {
            "welcome_code": code,
            "userid": welcome.userid,
            "external_userid": welcome.external_userid,
            "text": message_text,
            "attachments": attachments,
            "sent_at": call.now,
        }
    )
    del corp.welcome_messages[:-1000]
    corp.record_staff_message(welcome.userid, welcome.external_userid, call.now)
    return {}


# --- mass messages -----------------------------------------------------------------------------
def _tag_filter(corp: Corp, body: Mapping[str, Any]) -> list[list[str]]:
    groups = obj(body, "tag_filter").get("group_list") or []
    result = []
    for group in groups:
        tags = group.get("tag_list") if isinstance(group, dict) else None
        if not isinstance(tags, list):
            raise ApiError(e.INVALID_PARAMETER, "tag_filter.group_list[].tag_list")
        for tag_id in tags:
            if corp.tag(tag_id) is None:
                raise ApiError(e.INVALID_TAG, tag_id)
        if tags:
            result.append(tags)
    return result


def _matches(follow: Follow, tag_groups: list[list[str]]) -> bool:
    # tags within a group: any of them; across groups: all groups
    return all(any(t in follow.tags for t in group) for group in tag_groups)


@endpoint("externalcontact/add_msg_template")
def add_msg_template(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    chat_type = body.get("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise ApiError(e.INVALID_PARAMETER, "chat_type")
    external_userids = strings(body, "external_userid", max_items=10_000)
    chat_ids = strings(body, "chat_id_list", max_items=2_000)
    sender = text(body, "sender", required=False)
    if sender:
        staff_member(corp, sender)
    message_text = obj(body, "text")
    if message_text.get("content") is not None and len(str(message_text["content"])) > 4000:
        raise ApiError(e.INVALID_PARAMETER, "text.content exceeds 4000 characters")
    attachments = check_attachments(call, body.get("attachments"))
    if not message_text.get("content") and not attachments:
        raise ApiError(e.INVALID_PARAMETER, "text and attachments are both empty")
    tag_groups = _tag_filter(corp, body)
    recipients: list[MassRecipient] = []
    fail_list: list[str] = []
    if chat_type == "single":
        if not external_userids and not sender:
            raise ApiError(e.INVALID_PARAMETER, "external_userid and sender are both empty")
        if external_userids:
            for external_userid in dict.fromkeys(external_userids):
                customer = corp.customers.get(external_userid)
                if customer is None:
                    follows = []
                elif sender:
                    follows = [customer.follows[sender]] if sender in customer.follows else []
                else:  # every member who has the customer gets a task; the first to send wins
                    follows = [f for f in customer.follows.values() if corp.active_staff(f.userid)]
                follows = [f for f in follows if _matches(f, tag_groups)]
                if not follows:
                    fail_list.append(external_userid)
                for follow in follows:
                    recipients.append(MassRecipient(follow.userid, external_userid=external_userid))
        else:
            for external_userid, follow in corp.by_user.get(sender, {}).items():
                if _matches(follow, tag_groups):
                    recipients.append(MassRecipient(sender, external_userid=external_userid))
    else:
        if not sender:
            raise ApiError(e.INVALID_PARAMETER, "sender is required for chat_type group")
        owned = [g for g in corp.groups.values() if g.owner == sender and not g.dismissed]
        if chat_ids:
            owned = [g for g in owned if g.chat_id in chat_ids]
        recipients = [MassRecipient(sender, chat_id=g.chat_id) for g in owned]
    if not recipients:
        raise ApiError(e.NO_RECIPIENT)
    message = MassMessage(
        msgid=call.world.ids.msgid(),
        chat_type=chat_type,
        create_time=call.now,
        text=message_text,
        attachments=attachments,
        allow_select=bool(body.get("allow_select")),
        recipients=recipients,
    )
    for recipient in recipients:
        message.senders.setdefault(recipient.userid, MassSender())
    corp.mass_messages[message.msgid] = message
    return {"fail_list": fail_list, "msgid": message.msgid}


def _mass_message(call: Call) -> MassMessage:
    msgid = text(call.body, "msgid", missing=e.MISSING_MSGID)
    message = call.corp.mass_messages.get(msgid)
    if message is None:
        raise ApiError(e.INVALID_MSGID)
    return message


@endpoint("externalcontact/get_groupmsg_list_v2")
def get_groupmsg_list_v2(call: Call) -> dict[str, Any]:
    body = call.body
    chat_type = text(body, "chat_type")
    if chat_type not in ("single", "group"):
        raise ApiError(e.INVALID_PARAMETER, "chat_type")
    start, end = integer(body, "start_time"), integer(body, "end_time")
    if end < start or end - start > 31 * DAY:
        raise ApiError(e.INVALID_PARAMETER, "start_time and end_time span at most a month")
    creator = text(body, "creator", required=False)
    filter_type = integer(body, "filter_type", 2)
    limit = page_size(body, "limit", 50, 100)
    messages = [
        m
        for m in call.corp.mass_messages.values()
        if m.chat_type == chat_type
        and start <= m.create_time <= end
        and (filter_type == 2 or m.create_type == filter_type)
        and (not creator or m.creator == creator)
    ]
    page, next_cursor = offset_page(messages, text(body, "cursor", required=False), limit)
    result = []
    for message in page:
        item: dict[str, Any] = {
            "msgid": message.msgid,
            "create_time": message.create_time,
            "create_type": message.create_type,
        }
        if message.creator:
            item["creator"] = message.creator
        if message.text:
            item["text"] = message.text
        if message.attachments:
            item["attachments"] = message.attachments
        result.append(item)
    return {"next_cursor": next_cursor, "group_msg_list": result}


@endpoint("externalcontact/get_groupmsg_task")
def get_groupmsg_task(call: Call) -> dict[str, Any]:
    message = _mass_message(call)
    limit = page_size(call.body, "limit", 500, 1000)
    tasks = list(message.senders.items())
    page, next_cursor = offset_page(tasks, text(call.body, "cursor", required=False), limit)
    task_list = []
    for userid, sender in page:
        item: dict[str, Any] = {"userid": userid, "status": sender.status}
        if sender.send_time:
            item["send_time"] = sender.send_time
        task_list.append(item)
    return {"next_cursor": next_cursor, "task_list": task_list}


@endpoint("externalcontact/get_groupmsg_send_result")
def get_groupmsg_send_result(call: Call) -> dict[str, Any]:
    message = _mass_message(call)
    userid = text(call.body, "userid", missing=e.MISSING_USERID)
    limit = page_size(call.body, "limit", 500, 1000)
    rows = [r for r in message.recipients if r.userid == userid]
    page, next_cursor = offset_page(rows, text(call.body, "cursor", required=False), limit)
    send_list = []
    for row in page:
        item: dict[str, Any] = {"userid": row.userid, "status": row.status}
        if row.external_userid:
            item["external_userid"] = row.external_userid
        if row.chat_id:
            item["chat_id"] = row.chat_id
        if row.send_time:
            item["send_time"] = row.send_time
        send_list.append(item)
    return {"next_cursor": next_cursor, "send_list": send_list}


@endpoint("externalcontact/cancel_groupmsg_send")
def cancel_groupmsg_send(call: Call) -> dict[str, Any]:
    _mass_message(call).cancelled = True
    return {}


# --- group chats -------------------------------------------------------------------------------
def _owner_filter(call: Call) -> list[str]:
    owners = strings(obj(call.body, "owner_filter"), "userid_list", max_items=100)
    for userid in owners:
        if userid not in call.corp.staff:
            raise ApiError(e.INVALID_USERID, userid)
    return owners


def _group_status(corp: Corp, group: GroupChat) -> int:
    owner = corp.staff.get(group.owner)
    return 1 if owner is not None and owner.resigned_at else 0


@endpoint("externalcontact/groupchat/list")
def groupchat_list(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    limit = integer(body, "limit")
    if not 1 <= limit <= 1000:
        raise ApiError(e.INVALID_PARAMETER, "limit must be within 1..1000")
    status_filter = integer(body, "status_filter", 0)
    owners = _owner_filter(call)
    groups = [
        g
        for g in corp.groups.values()
        if not g.dismissed
        and (not owners or g.owner in owners)
        and (status_filter == 0 or _group_status(corp, g) == status_filter)
    ]
    page, next_cursor = offset_page(groups, text(body, "cursor", required=False), limit)
    return {
        "group_chat_list": [{"chat_id": g.chat_id, "status": _group_status(corp, g)} for g in page],
        "next_cursor": next_cursor,
    }


def _group(call: Call) -> GroupChat:
    chat_id = text(call.body, "chat_id")
    group = call.corp.groups.get(chat_id)
    if group is None or group.dismissed:
        raise ApiError(e.CHAT_NOT_FOUND)
    return group


@endpoint("externalcontact/groupchat/get")
def groupchat_get(call: Call) -> dict[str, Any]:
    group = _group(call)
    need_name = integer(call.body, "need_name", 0) == 1
    members = []
    for member in group.members.values():
        item: dict[str, Any] = {
            "userid": member.userid,
            "type": member.type,
            "join_time": member.join_time,
            "join_scene": member.join_scene,
        }
        if member.invitor:
            item["invitor"] = {"userid": member.invitor}
        item["group_nickname"] = member.group_nickname
        if need_name:
            item["name"] = member.name
        if member.type == 2 and member.unionid:
            item["unionid"] = member.unionid
        if member.state:
            item["state"] = member.state
        members.append(item)
    return {
        "group_chat": {
            "chat_id": group.chat_id,
            "name": group.name,
            "owner": group.owner,
            "create_time": group.create_time,
            "notice": group.notice,
            "member_list": members,
            "admin_list": [{"userid": a} for a in group.admin_list],
            "member_version": group.member_version,
        }
    }


STATISTIC_ORDER = {
    1: "new_chat_cnt",
    2: "chat_total",
    3: "chat_has_msg",
    4: "new_member_cnt",
    5: "member_total",
    6: "member_has_msg",
    7: "msg_total",
}


@endpoint("externalcontact/groupchat/statistic")
def groupchat_statistic(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    begin = day_start(integer(body, "day_begin_time"))
    end = day_start(integer(body, "day_end_time", begin))
    if end < begin or end - begin > 30 * DAY:
        raise ApiError(e.INVALID_PARAMETER, "day_end_time within 30 days after day_begin_time")
    owners = _owner_filter(call)
    if not owners:
        raise ApiError(e.INVALID_PARAMETER, "owner_filter.userid_list missing")
    order_by = integer(body, "order_by", 1)
    if order_by not in STATISTIC_ORDER:
        raise ApiError(e.INVALID_PARAMETER, "order_by")
    ascending = integer(body, "order_asc", 0) == 1
    offset = integer(body, "offset", 0)
    limit = page_size(body, "limit", 500, 1000)
    stop = end + DAY
    days = [day_key(d) for d in range(begin, stop, DAY)]
    items = []
    for owner in owners:
        groups = [
            g
            for g in corp.groups.values()
            if g.owner == owner
            and g.create_time < stop
            and not (g.dismissed and g.dismissed_at < begin)
        ]
        data = dict.fromkeys(STATISTIC_ORDER.values(), 0)
        data["migrate_trainee_chat_cnt"] = 0
        speakers: set[str] = set()
        for group in groups:
            data["chat_total"] += 1
            data["member_total"] += len(group.members)
            if begin <= group.create_time < stop:
                data["new_chat_cnt"] += 1
            data["new_member_cnt"] += sum(
                1
                for m in group.members.values()
                if begin <= m.join_time < stop and m.userid != group.owner
            )
            had_messages = False
            for day in days:
                activity = corp.group_activity.get(day, {}).get(group.chat_id)
                if activity:
                    had_messages = had_messages or activity["msg_total"] > 0
                    data["msg_total"] += activity["msg_total"]
                    speakers.update(f"{group.chat_id}|{s}" for s in activity["senders"])
            data["chat_has_msg"] += int(had_messages)
        data["member_has_msg"] = len(speakers)
        items.append({"owner": owner, "data": data})
    key = STATISTIC_ORDER[order_by]
    items.sort(key=lambda item: item["data"][key], reverse=not ascending)
    page = items[offset : offset + limit]
    return {"total": len(items), "next_offset": min(offset + limit, len(items)), "items": page}


# --- join ways ---------------------------------------------------------------------------------
def _join_way_options(call: Call, way: JoinWay, body: Mapping[str, Any]) -> None:
    corp = call.corp
    scene = integer(body, "scene")
    if scene not in (1, 2):
        raise ApiError(e.INVALID_PARAMETER, "scene must be 1 or 2")
    chat_ids = strings(body, "chat_id_list", required=True)
    if len(chat_ids) > 5:
        raise ApiError(e.JOIN_WAY_TOO_MANY_CHATS)
    for chat_id in chat_ids:
        group = corp.groups.get(chat_id)
        if group is None or group.dismissed:
            raise ApiError(e.CHAT_NOT_FOUND, chat_id)
    way.scene = scene
    way.chat_id_list = list(chat_ids)
    way.qr_code = _qr_url(call, "join", way.config_id) if scene == 2 else ""
    way.remark = str(body.get("remark") or "")[:30]  # WeCom truncates the remark
    way.auto_create_room = integer(body, "auto_create_room", 1)
    way.room_base_name = text(body, "room_base_name", required=False, max_length=40)
    way.room_base_id = integer(body, "room_base_id", 0)
    way.state = text(body, "state", required=False, max_length=30)
    way.mark_source = bool(body.get("mark_source"))


@endpoint("externalcontact/groupchat/add_join_way")
def add_join_way(call: Call) -> dict[str, Any]:
    corp = call.corp
    if len(corp.contact_ways) + len(corp.join_ways) >= corp.settings.contact_way_max_total:
        raise ApiError(e.CONTACT_WAY_LIMIT)
    way = JoinWay(call.world.ids.config_id(), 0, [], created_at=call.now)
    _join_way_options(call, way, call.body)
    corp.join_ways[way.config_id] = way
    return {"config_id": way.config_id}


def _join_way(call: Call) -> JoinWay:
    config_id = text(call.body, "config_id", missing=e.MISSING_CONFIG_ID)
    way = call.corp.join_ways.get(config_id)
    if way is None:
        raise ApiError(e.INVALID_CONFIG_ID)
    return way


@endpoint("externalcontact/groupchat/get_join_way")
def get_join_way(call: Call) -> dict[str, Any]:
    way = _join_way(call)
    data: dict[str, Any] = {
        "config_id": way.config_id,
        "scene": way.scene,
        "remark": way.remark,
        "auto_create_room": way.auto_create_room,
        "room_base_name": way.room_base_name,
        "room_base_id": way.room_base_id,
        "chat_id_list": list(way.chat_id_list),
        "state": way.state,
        "mark_source": way.mark_source,
    }
    if way.scene == 2:
        data["qr_code"] = way.qr_code
    return {"join_way": data}


@endpoint("externalcontact/groupchat/update_join_way")
def update_join_way(call: Call) -> dict[str, Any]:
    _join_way_options(call, _join_way(call), call.body)
    return {}


@endpoint("externalcontact/groupchat/del_join_way")
def del_join_way(call: Call) -> dict[str, Any]:
    del call.corp.join_ways[_join_way(call).config_id]
    return {}


# --- Moments -----------------------------------------------------------------------------------
@endpoint("externalcontact/add_moment_task")
def add_moment_task(call: Call) -> dict[str, Any]:
    corp, body, now = call.corp, call.body, call.now
    message_text = obj(body, "text")
    attachments = check_attachments(
        call, body.get("attachments"), types=("image", "video", "link"), limit=9
    )
    if not message_text.get("content") and not attachments:
        raise ApiError(e.MOMENT_EMPTY)
    kinds = {a["msgtype"] for a in attachments}
    if len(kinds) > 1 or (kinds & {"video", "link"} and len(attachments) > 1):
        raise ApiError(e.INVALID_ATTACHMENT_TYPE, "images (up to 9), one video or one link")
    recent = [t for t in corp.moment_task_times if now - t < 60]
    if len(recent) >= corp.settings.moment_tasks_per_minute:
        raise ApiError(e.FREQUENCY_LIMIT, "add_moment_task is limited per minute")
    corp.moment_task_times = [*recent, now]
    visible = obj(body, "visible_range")
    sender_list = obj(visible, "sender_list")
    users = strings(sender_list, "user_list")
    departments = integers(sender_list, "department_list")
    tags = strings(obj(visible, "external_contact_list"), "tag_list")
    invalid_users = [u for u in users if corp.active_staff(u) is None]
    invalid_departments = [d for d in departments if d not in corp.departments]
    invalid_tags = [t for t in tags if corp.tag(t) is None]
    if users or departments:
        senders = staff_pool(
            corp,
            [u for u in users if u not in invalid_users],
            [d for d in departments if d not in invalid_departments],
        )
    else:
        senders = [s.userid for s in corp.staff.values() if s.active]
    job = MomentJob(
        jobid=call.world.ids.jobid(),
        created_at=now,
        moment_id=call.world.ids.moment_id(),
        text=message_text,
        attachments=attachments,
        senders=senders,
        visible_tags=[t for t in tags if t not in invalid_tags],
        invalid_users=invalid_users,
        invalid_departments=invalid_departments,
        invalid_tags=invalid_tags,
    )
    corp.moment_jobs[job.jobid] = job
    return {"jobid": job.jobid}


@endpoint("externalcontact/get_moment_task_result", "GET")
def get_moment_task_result(call: Call) -> dict[str, Any]:
    corp = call.corp
    jobid = text(call.query, "jobid")
    job = corp.moment_jobs.get(jobid)
    if job is None or call.now > job.created_at + corp.settings.moment_job_ttl:
        raise ApiError(e.INVALID_JOBID)
    if call.now < job.created_at + corp.settings.moment_job_seconds:
        return {"status": 2, "type": "add_moment_task", "result": {}}
    return {
        "status": 3,
        "type": "add_moment_task",
        "result": {
            "errcode": 0,
            "errmsg": "ok",
            "moment_id": job.moment_id,
            "invalid_sender_list": {
                "user_list": job.invalid_users,
                "department_list": job.invalid_departments,
            },
            "invalid_external_contact_list": {"tag_list": job.invalid_tags},
        },
    }


# --- statistics --------------------------------------------------------------------------------
@endpoint("externalcontact/get_user_behavior_data")
def get_user_behavior_data(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    userids = strings(body, "userid", max_items=100)
    parties = integers(body, "partyid")
    if not userids and not parties:
        raise ApiError(e.INVALID_PARAMETER, "userid and partyid are both empty")
    for userid in userids:
        if userid not in corp.staff:
            raise ApiError(e.INVALID_USERID, userid)
    for dept in parties:
        if dept not in corp.departments:
            raise ApiError(e.DEPARTMENT_NOT_FOUND, f"partyid {dept}")
    begin = day_start(integer(body, "start_time"))
    end = day_start(integer(body, "end_time"))
    if end < begin or end - begin > 30 * DAY:
        raise ApiError(e.INVALID_PARAMETER, "start_time and end_time span at most 30 days")
    users = set(userids) | set(corp.staff_in_departments(parties))
    result = []
    for day in range(begin, end + DAY, DAY):
        stats = corp.behavior.get(day_key(day), {})
        totals = dict.fromkeys(
            (
                "new_apply_cnt",
                "new_contact_cnt",
                "negative_feedback_cnt",
                "message_cnt",
                "initiated",
                "replied",
                "reply_seconds",
            ),
            0,
        )
        chat_cnt = 0
        for userid in users:
            user_stats = stats.get(userid)
            if user_stats is None:
                continue
            for name in totals:
                totals[name] += user_stats[name]
            chat_cnt += len(user_stats["chat_customers"])
        item: dict[str, Any] = {
            "stat_time": day,
            "chat_cnt": chat_cnt,
            "message_cnt": totals["message_cnt"],
            "negative_feedback_cnt": totals["negative_feedback_cnt"],
            "new_apply_cnt": totals["new_apply_cnt"],
            "new_contact_cnt": totals["new_contact_cnt"],
        }
        if totals["initiated"]:
            item["reply_percentage"] = round(100.0 * totals["replied"] / totals["initiated"], 2)
        if totals["replied"]:
            item["avg_reply_time"] = round(totals["reply_seconds"] / totals["replied"] / 60)
        result.append(item)
    return {"behavior_data": result}


# --- transfers ---------------------------------------------------------------------------------
def _transfer(call: Call, kind: str) -> dict[str, Any]:
    corp, body, now = call.corp, call.body, call.now
    handover = text(body, "handover_userid")
    takeover = text(body, "takeover_userid")
    external_userids = strings(body, "external_userid", max_items=100, required=True)
    message = text(body, "transfer_success_msg", required=False, max_length=200)
    leaving = corp.staff.get(handover)
    if leaving is None:
        raise ApiError(e.INVALID_USERID, handover)
    if kind == "resigned" and not leaving.resigned_at:
        raise ApiError(e.NOT_RESIGNED)
    if kind == "onjob" and leaving.resigned_at:
        raise ApiError(e.INVALID_USERID, f"{handover} has left the corp")
    staff_member(corp, takeover)
    customers = []
    for external_userid in external_userids:
        errcode = 0
        customer = corp.customers.get(external_userid)
        recent = [
            t
            for t in corp.transfers
            if t.external_userid == external_userid
            and t.kind == "onjob"
            and now - t.requested_at < 90 * DAY
        ]
        if customer is None:
            errcode = e.INVALID_EXTERNAL_USERID
        elif handover == takeover:
            errcode = e.TRANSFER_SAME_USER
        elif handover not in customer.follows:
            errcode = e.NOT_HANDOVER_CUSTOMER
        elif any(t.external_userid == external_userid and t.status == 2 for t in corp.transfers):
            errcode = e.TRANSFER_IN_PROGRESS
        elif kind == "onjob" and len(recent) >= 2:
            errcode = e.TRANSFER_TOO_FREQUENT
        if errcode == 0:
            corp.transfers.append(
                Transfer(kind, handover, takeover, external_userid, now, success_msg=message)
            )
        customers.append({"external_userid": external_userid, "errcode": errcode})
    return {"customer": customers}


@endpoint("externalcontact/transfer_customer")
def transfer_customer(call: Call) -> dict[str, Any]:
    return _transfer(call, "onjob")


@endpoint("externalcontact/resigned/transfer_customer")
def resigned_transfer_customer(call: Call) -> dict[str, Any]:
    return _transfer(call, "resigned")


def _transfer_result(call: Call, kind: str) -> dict[str, Any]:
    handover = text(call.body, "handover_userid")
    takeover = text(call.body, "takeover_userid")
    rows = [
        t
        for t in call.corp.transfers
        if t.kind == kind and t.handover_userid == handover and t.takeover_userid == takeover
    ]
    page, next_cursor = offset_page(rows, text(call.body, "cursor", required=False), 1000)
    return {
        "customer": [
            {
                "external_userid": t.external_userid,
                "status": t.status,
                "takeover_time": t.takeover_time,
            }
            for t in page
        ],
        "next_cursor": next_cursor,
    }


@endpoint("externalcontact/transfer_result")
def transfer_result(call: Call) -> dict[str, Any]:
    return _transfer_result(call, "onjob")


@endpoint("externalcontact/resigned/transfer_result")
def resigned_transfer_result(call: Call) -> dict[str, Any]:
    return _transfer_result(call, "resigned")


@endpoint("externalcontact/get_unassigned_list")
def get_unassigned_list(call: Call) -> dict[str, Any]:
    corp = call.corp
    pending = {(t.handover_userid, t.external_userid) for t in corp.transfers if t.status == 2}
    rows = [
        (staff, external_userid)
        for staff in corp.staff.values()
        if staff.resigned_at
        for external_userid in corp.by_user.get(staff.userid, {})
        if (staff.userid, external_userid) not in pending
    ]
    limit = page_size(call.body, "page_size", 1000, 1000)
    page, next_cursor = offset_page(rows, text(call.body, "cursor", required=False), limit)
    return {
        "info": [
            {
                "handover_userid": staff.userid,
                "external_userid": external_userid,
                "dimission_time": staff.resigned_at,
            }
            for staff, external_userid in page
        ],
        "is_last": not next_cursor,
        "next_cursor": next_cursor,
    }


# --- media and app messages --------------------------------------------------------------------
MEDIA_LIMITS = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "file": 20 << 20}


@endpoint("media/upload", scope="any")
def media_upload(call: Call) -> dict[str, Any]:
    kind = call.query.get("type", "")
    if kind not in MEDIA_LIMITS:
        raise ApiError(e.INVALID_MEDIA_TYPE)
    upload = call.files.get("media")
    if upload is None or not upload[1]:
        raise ApiError(e.EMPTY_MEDIA)
    filename, content = upload
    if len(content) <= 5 or len(content) > MEDIA_LIMITS[kind]:
        raise ApiError(e.INVALID_FILE_SIZE)
    media = Media(call.world.ids.media_id(), kind, call.now, filename, len(content))
    call.corp.media[media.media_id] = media
    return {"type": kind, "media_id": media.media_id, "created_at": str(call.now)}


MESSAGE_TYPES = {
    "text",
    "image",
    "voice",
    "video",
    "file",
    "textcard",
    "news",
    "mpnews",
    "markdown",
    "miniprogram_notice",
    "template_card",
}


@endpoint("message/send", scope="agent")
def message_send(call: Call) -> dict[str, Any]:
    corp, body = call.corp, call.body
    agentid = integer(body, "agentid", missing=e.MISSING_AGENTID, invalid=e.INVALID_AGENTID)
    if call.app.agentid != agentid:
        raise ApiError(e.INVALID_AGENTID)
    msgtype = text(body, "msgtype")
    if msgtype not in MESSAGE_TYPES:
        raise ApiError(e.INVALID_MSGTYPE)
    payload = obj(body, msgtype)
    if msgtype == "text" and not payload.get("content"):
        raise ApiError(e.EMPTY_CONTENT)
    if msgtype in ("image", "voice", "video", "file"):
        check_media(call, text(payload, "media_id"))
    touser = [u for u in str(body.get("touser") or "").split("|") if u]
    toparty = [p for p in str(body.get("toparty") or "").split("|") if p]
    totag = [t for t in str(body.get("totag") or "").split("|") if t]
    if not (touser or toparty or totag):
        raise ApiError(e.INVALID_PARAMETER, "touser, toparty and totag are all empty")
    if touser == ["@all"]:
        valid_users = [s.userid for s in corp.staff.values() if s.active]
        invalid_users: list[str] = []
    else:
        valid_users = [u for u in touser if corp.active_staff(u)]
        invalid_users = [u for u in touser if not corp.active_staff(u)]
    valid_parties = [p for p in toparty if p.isdigit() and int(p) in corp.departments]
    invalid_parties = [p for p in toparty if p not in valid_parties]
    recipients = list(valid_users)
    for userid in corp.staff_in_departments([int(p) for p in valid_parties]):
        if userid not in recipients:
            recipients.append(userid)
    if not recipients:
        raise ApiError(e.ALL_RECIPIENTS_INVALID)
    msgid = call.world.ids.chars(40)
    corp.app_messages.append(
        {
            "msgid": msgid,
            "agentid": agentid,
            "msgtype": msgtype,
            "touser": recipients,
            msgtype: payload,
            "sent_at": call.now,
        }
    )
    del corp.app_messages[:-1000]
    return {
        "invaliduser": "|".join(invalid_users),
        "invalidparty": "|".join(invalid_parties),
        "invalidtag": "|".join(totag),  # tags are not emulated
        "unlicenseduser": "",
        "msgid": msgid,
    }


def before_call(call: Call) -> int:
    """Let time pass for the corp: due transfers complete before the call is answered."""
    return settle(call.world, call.corp)
