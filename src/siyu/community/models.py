"""Customer groups (WeCom external group chats) and their members.

The minimal shape WeCom sync and callbacks need, ready for the community issue to extend
(roles, life cycle, check-ins). Only ``siyu.community.services`` writes these tables.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from siyu.core.scoping import TenantScopedModel

STATE_MAX_LENGTH = 30  # WeCom: ``state`` of join ways is at most 30 characters


class Group(TenantScopedModel):
    """A WeCom external group chat (客户群), identified by its ``chat_id``."""

    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("group", "active")
        DISMISSED = "dismissed", _("dismissed")

    chat_id = models.CharField(_("chat id"), max_length=64)
    name = models.CharField(_("name"), max_length=255, blank=True)
    owner = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=pgettext_lazy("group", "owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_groups",
    )
    owner_userid = models.CharField(
        pgettext_lazy("group", "owner userid"), max_length=64, blank=True
    )
    notice = models.TextField(_("notice"), blank=True)
    created_at_wecom = models.DateTimeField(_("created in WeCom at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    member_count = models.PositiveIntegerField(_("member count"), default=0)
    customer_member_count = models.PositiveIntegerField(_("customer member count"), default=0)
    admin_userids = models.JSONField(_("administrators"), default=list, blank=True)
    member_version = models.CharField(_("member version"), max_length=64, blank=True)
    dismissed_at = models.DateTimeField(_("dismissed at"), null=True, blank=True)
    # WeCom's timestamp of the newest applied snapshot or change of the group itself.
    wecom_seen_at = models.DateTimeField(_("WeCom data as of"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    data_scope_owner = "owner"

    class Meta:
        verbose_name = _("customer group")
        verbose_name_plural = _("customer groups")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "chat_id"], name="group_unique_chat_id")
        ]
        indexes = [models.Index(fields=["tenant", "status", "owner"], name="group_status_owner")]

    def __str__(self) -> str:
        return self.name or self.chat_id


class GroupMember(TenantScopedModel):
    """A member of a group: a staff (``member_type`` 1) or a customer (2)."""

    class MemberType(models.IntegerChoices):
        STAFF = 1, _("staff")
        CUSTOMER = 2, _("customer")

    class JoinScene(models.IntegerChoices):
        UNKNOWN = 0, _("unknown")
        DIRECT_INVITE = 1, _("invited directly")
        LINK_INVITE = 2, _("invited by link")
        QR_CODE = 3, _("scanned the group QR code")

    class QuitScene(models.IntegerChoices):
        SELF = 0, _("left by themselves")
        REMOVED = 1, _("removed by the owner or an administrator")

    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("group member", "in the group")
        LEFT = "left", _("left")

    group = models.ForeignKey(
        Group, verbose_name=_("group"), on_delete=models.CASCADE, related_name="members"
    )
    userid = models.CharField(
        _("userid"), max_length=64, help_text=_("Staff userid or customer external_userid")
    )
    member_type = models.PositiveSmallIntegerField(
        _("member type"), choices=MemberType.choices, default=MemberType.CUSTOMER
    )
    customer = models.ForeignKey(
        "customers.Customer",
        verbose_name=_("customer"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="group_memberships",
    )
    staff = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("staff"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="group_memberships",
    )
    join_time = models.DateTimeField(_("joined at"), null=True, blank=True)
    join_scene = models.PositiveSmallIntegerField(
        _("join scene"), choices=JoinScene.choices, default=JoinScene.UNKNOWN
    )
    invitor_userid = models.CharField(_("invited by (userid)"), max_length=64, blank=True)
    group_nickname = models.CharField(_("nickname in the group"), max_length=128, blank=True)
    name = models.CharField(_("name"), max_length=128, blank=True)
    unionid = models.CharField(_("unionid"), max_length=64, blank=True)
    state = models.CharField(
        pgettext_lazy("contact way", "state"), max_length=STATE_MAX_LENGTH, blank=True
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    left_at = models.DateTimeField(_("left at"), null=True, blank=True)
    quit_scene = models.PositiveSmallIntegerField(
        _("quit scene"), choices=QuitScene.choices, null=True, blank=True
    )
    # WeCom's timestamp of the newest applied change of this membership.
    wecom_seen_at = models.DateTimeField(_("WeCom data as of"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    data_scope_owner = "group__owner"

    class Meta:
        verbose_name = _("group member")
        verbose_name_plural = _("group members")
        ordering = ["join_time", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "group", "userid"], name="groupmember_unique_userid"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "userid"], name="groupmember_userid"),
            models.Index(fields=["tenant", "customer", "status"], name="groupmember_customer"),
        ]

    def __str__(self) -> str:
        return self.group_nickname or self.name or self.userid

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE
