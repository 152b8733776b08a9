"""What each WeCom callback changes in Siyu.

Each processor reads the callback, fetches what the callback does not carry from WeCom
through the real client, and hands the result to the owning domain's services, which record
the normalised Siyu events (``follow.added``, ``group.member_joined``, ``staff.departed`` …).
WeCom's ``CreateTime`` is passed on as ``seen_at`` so that a late, out-of-order delivery never
overwrites a newer state.
"""

from __future__ import annotations

from typing import Any

from siyu.tenancy import services as tenancy
from siyu.tenancy.models import Department, Tenant
from siyu.wecom.processing import processes


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
