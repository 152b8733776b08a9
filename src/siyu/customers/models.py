"""Customers (external contacts), their friendships with staff (follows) and corp tags.

The minimal shape WeCom sync and callbacks need, ready for the CRM to extend. Only
``siyu.customers.services`` writes these tables; other domains read through
``siyu.customers.selectors`` and react to the events in ``siyu.customers.events``.

WeCom's model: an external contact (``external_userid``) is one ``Customer`` per tenant; each
staff who added them is one ``Follow`` (remark, add time, add way, ``state`` of the contact
way); corp tags (``TagGroup`` / ``Tag``) are marked per (staff, customer), so they hang off
the follow (``FollowTag``).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from siyu.core.scoping import TenantScopedModel

STATE_MAX_LENGTH = 30  # WeCom: ``state`` of contact ways and join ways is at most 30 characters


class Customer(TenantScopedModel):
    """One external contact of the brand, however many staff have added them."""

    class Type(models.IntegerChoices):
        WECHAT = 1, _("WeChat user")
        WECOM = 2, _("WeCom user")

    class Gender(models.IntegerChoices):
        UNKNOWN = 0, _("unknown")
        MALE = 1, _("male")
        FEMALE = 2, _("female")

    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("customer", "active")
        LOST = "lost", _("lost")

    external_userid = models.CharField(_("external userid"), max_length=64)
    unionid = models.CharField(_("unionid"), max_length=64, blank=True)
    name = models.CharField(_("name"), max_length=128, blank=True)
    avatar = models.CharField(_("avatar"), max_length=512, blank=True)
    type = models.PositiveSmallIntegerField(_("type"), choices=Type.choices, default=Type.WECHAT)
    gender = models.PositiveSmallIntegerField(
        _("gender"), choices=Gender.choices, default=Gender.UNKNOWN
    )
    corp_name = models.CharField(_("company"), max_length=128, blank=True)
    corp_full_name = models.CharField(_("company full name"), max_length=255, blank=True)
    position = models.CharField(_("position"), max_length=128, blank=True)
    first_added_at = models.DateTimeField(_("first added at"), null=True, blank=True)
    source_state = models.CharField(
        _("source state"),
        max_length=STATE_MAX_LENGTH,
        blank=True,
        help_text=_("The state of the contact way of the first add (its channel)"),
    )
    owner = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_customers",
        help_text=_("The staff of the earliest active friendship"),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    lost_at = models.DateTimeField(_("lost at"), null=True, blank=True)
    # WeCom's timestamp of the newest applied profile change: older updates are ignored.
    wecom_seen_at = models.DateTimeField(_("WeCom data as of"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    data_scope_owner = "owner"

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "external_userid"], name="customer_unique_external_userid"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "unionid"], name="customer_unionid"),
            models.Index(fields=["tenant", "status", "owner"], name="customer_status_owner"),
        ]

    def __str__(self) -> str:
        return self.name or self.external_userid


class Follow(TenantScopedModel):
    """One staff ↔ customer friendship (WeCom's ``follow_user`` entry)."""

    class AddWay(models.IntegerChoices):
        UNKNOWN = 0, _("unknown source")
        QR_CODE = 1, _("scanned a QR code")
        MOBILE = 2, _("searched a mobile number")
        CARD = 3, _("shared business card")
        GROUP_CHAT = 4, _("group chat")
        PHONE_CONTACTS = 5, _("phone contacts")
        WECHAT_CONTACTS = 6, _("WeChat contacts")
        WECHAT_REQUEST = 7, _("friend request from WeChat")
        THIRD_PARTY_SERVICE = 8, _("third-party app service staff")
        EMAIL = 9, _("searched an email")
        CHANNELS = 10, _("WeChat Channels")
        SCHEDULE = 11, _("schedule attendee")
        MEETING = 12, _("meeting attendee")
        WECHAT_FRIEND = 13, _("WeCom of a WeChat friend")
        SMART_HARDWARE = 14, _("smart hardware service")
        ON_SITE_SERVICE = 15, _("on-site service")
        ACQUISITION_LINK = 16, _("customer acquisition link")
        SHARED = 201, _("shared by a colleague")
        ASSIGNED = 202, _("assigned by an administrator")

    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("follow", "active")
        DELETED_BY_CUSTOMER = "deleted_by_customer", _("deleted by the customer")
        DELETED_BY_STAFF = "deleted_by_staff", _("deleted by the staff")

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="follows"
    )
    staff = models.ForeignKey(
        "tenancy.Staff", verbose_name=_("staff"), on_delete=models.PROTECT, related_name="follows"
    )
    remark = models.CharField(_("remark"), max_length=128, blank=True)
    description = models.CharField(_("description"), max_length=255, blank=True)
    remark_mobiles = models.JSONField(_("remark mobiles"), default=list, blank=True)
    remark_corp_name = models.CharField(_("remark company"), max_length=128, blank=True)
    added_at = models.DateTimeField(_("added at"))
    add_way = models.PositiveSmallIntegerField(
        _("add way"), choices=AddWay.choices, default=AddWay.UNKNOWN
    )
    state = models.CharField(
        pgettext_lazy("contact way", "state"), max_length=STATE_MAX_LENGTH, blank=True
    )
    oper_userid = models.CharField(_("added by (userid)"), max_length=64, blank=True)
    status = models.CharField(
        _("status"), max_length=24, choices=Status.choices, default=Status.ACTIVE
    )
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    # WeCom's timestamp of the newest applied change: older (out-of-order) updates are ignored.
    wecom_seen_at = models.DateTimeField(_("WeCom data as of"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    data_scope_owner = "staff"

    class Meta:
        verbose_name = _("friendship")
        verbose_name_plural = _("friendships")
        ordering = ["added_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "customer", "staff"], name="follow_unique_customer_staff"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "staff", "status"], name="follow_staff_status"),
            models.Index(fields=["tenant", "state"], name="follow_state"),
        ]

    def __str__(self) -> str:
        return f"{self.staff} ↔ {self.customer}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class TagGroup(TenantScopedModel):
    """A corp tag group (标签组), synced from WeCom (``wecom_group_id``) or local (empty id)."""

    wecom_group_id = models.CharField(
        _("WeCom tag group id"), max_length=64, blank=True, help_text=_("Empty for local groups")
    )
    name = models.CharField(_("name"), max_length=64)
    order = models.BigIntegerField(_("order"), default=0)
    deleted = models.BooleanField(_("deleted"), default=False)
    wecom_created_at = models.DateTimeField(_("created in WeCom at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("tag group")
        verbose_name_plural = _("tag groups")
        # WeCom sorts by ``order`` descending: a bigger order comes first.
        ordering = ["-order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "wecom_group_id"],
                condition=~models.Q(wecom_group_id=""),
                name="taggroup_unique_wecom_group_id",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Tag(TenantScopedModel):
    """A corp tag (企业标签), synced from WeCom (``wecom_tag_id``) or local (empty id)."""

    group = models.ForeignKey(
        TagGroup, verbose_name=_("tag group"), on_delete=models.PROTECT, related_name="tags"
    )
    wecom_tag_id = models.CharField(
        _("WeCom tag id"), max_length=64, blank=True, help_text=_("Empty for local tags")
    )
    name = models.CharField(_("name"), max_length=64)
    order = models.BigIntegerField(_("order"), default=0)
    deleted = models.BooleanField(_("deleted"), default=False)
    wecom_created_at = models.DateTimeField(_("created in WeCom at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["-order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "wecom_tag_id"],
                condition=~models.Q(wecom_tag_id=""),
                name="tag_unique_wecom_tag_id",
            )
        ]

    def __str__(self) -> str:
        return self.name


class FollowTag(TenantScopedModel):
    """A corp tag a staff has put on a customer (WeCom marks tags per friendship)."""

    follow = models.ForeignKey(
        Follow, verbose_name=_("friendship"), on_delete=models.CASCADE, related_name="follow_tags"
    )
    tag = models.ForeignKey(
        Tag, verbose_name=_("tag"), on_delete=models.CASCADE, related_name="follow_tags"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    data_scope_owner = "follow__staff"

    class Meta:
        verbose_name = _("friendship tag")
        verbose_name_plural = _("friendship tags")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "follow", "tag"], name="followtag_unique_follow_tag"
            )
        ]

    def __str__(self) -> str:
        return f"{self.follow}: {self.tag}"
