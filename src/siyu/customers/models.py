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

from siyu.core.crypto import EncryptedTextField
from siyu.core.scoping import TenantScopedModel

STATE_MAX_LENGTH = 30  # WeCom: ``state`` of contact ways and join ways is at most 30 characters


class AgeBand(models.TextChoices):
    UNDER_18 = "lt18", _("under 18")
    FROM_18 = "18-24", _("18–24")
    FROM_25 = "25-34", _("25–34")
    FROM_35 = "35-44", _("35–44")
    FROM_45 = "45-54", _("45–54")
    FROM_55 = "55+", _("55 and over")


class LifecycleStage(models.TextChoices):
    """Where a customer stands; the rules are per tenant (``LifecyclePolicy``)."""

    NEW = "new", pgettext_lazy("lifecycle", "new")
    ACTIVE = "active", pgettext_lazy("lifecycle", "active")
    SILENT = "silent", pgettext_lazy("lifecycle", "silent")
    AT_RISK = "at_risk", _("at risk")
    CHURNED = "churned", _("churned")


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

    # --- profile (the CRM's own data; WeCom does not hold it) --------------------------------
    # The phone is personal data: encrypted at rest, shown masked unless the role may see it.
    # ``phone_hash`` (keyed HMAC of the normalised number) finds and dedupes without decrypting.
    phone = EncryptedTextField(_("phone"), blank=True, default="")
    phone_hash = models.CharField(_("phone fingerprint"), max_length=64, blank=True, editable=False)
    phone_verified = models.BooleanField(_("phone verified"), default=False)
    birthday = models.DateField(_("birthday"), null=True, blank=True)
    age_band = models.CharField(_("age band"), max_length=8, choices=AgeBand.choices, blank=True)
    province = models.CharField(_("province"), max_length=32, blank=True)
    city = models.CharField(_("city"), max_length=32, blank=True)
    interests = models.JSONField(_("interests"), default=list, blank=True)
    # Values of the tenant's custom fields, keyed by ``CustomField.key`` (typed by the field).
    custom = models.JSONField(_("custom fields"), default=dict, blank=True)
    lifecycle_stage = models.CharField(
        _("lifecycle stage"),
        max_length=10,
        choices=LifecycleStage.choices,
        default=LifecycleStage.NEW,
    )
    lifecycle_changed_at = models.DateTimeField(_("stage since"), null=True, blank=True)
    # The newest interaction of any kind (message, open, order, join ...): drives the stage.
    last_interaction_at = models.DateTimeField(_("last interaction"), null=True, blank=True)
    merged_into = models.ForeignKey(
        "self",
        verbose_name=_("merged into"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="merged_from",
        db_index=False,  # a partial index below: almost every row is NULL
        help_text=_("Set when this record was merged into another customer"),
    )
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
            models.Index(fields=["tenant", "phone_hash"], name="customer_phone_hash"),
            models.Index(fields=["tenant", "lifecycle_stage"], name="customer_lifecycle"),
            models.Index(fields=["tenant", "source_state"], name="customer_source_state"),
            models.Index(
                fields=["tenant", "last_interaction_at"], name="customer_last_interaction"
            ),
            # Only merged-away records: small, and SQLite's planner uses it (it ignored the full
            # index, whose statistics see one value, NULL, and scanned a million customers to
            # find the records merged into one — every customer 360 page).
            models.Index(
                fields=["merged_into"],
                name="customer_merged_into",
                condition=models.Q(merged_into__isnull=False),
            ),
            # Live records by owner: the console list counts them on every page (index-only,
            # 25× faster than through the tenant index on SQLite), its owner filter asks which
            # staff own any, and a sales staff's scope is their own.
            models.Index(
                fields=["tenant", "owner"],
                name="customer_live_owner",
                condition=models.Q(merged_into=None),
            ),
            # Live records by stage and source channel: the list filtered by stage + channel
            # (+ tag) counts from this index alone, without reading a customer row (2-3×
            # faster at a million). ``merged_into`` is carried because SQLite does not infer
            # it from the condition, ``id`` because PostgreSQL joins the tag filter on it
            # (SQLite has it anyway), and ``varchar_pattern_ops`` lets PostgreSQL turn the
            # channel's prefix LIKE into a range on any collation (SQLite ignores it).
            models.Index(
                fields=["tenant", "lifecycle_stage", "source_state", "merged_into", "id"],
                name="customer_live_stage_source",
                condition=models.Q(merged_into=None),
                opclasses=["", "", "varchar_pattern_ops", "", ""],
            ),
        ]
        permissions = [
            ("view_customer_phone", "Can see customers' phone numbers unmasked"),
            ("merge_customer", "Can merge customers"),
            ("import_customer", "Can import customers"),
            ("handover_customer", "Can hand customers over to another staff"),
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


class CustomerTag(TenantScopedModel):
    """The customer carries this tag: from any staff's marking in WeCom (``FollowTag``) or put
    on by Siyu. One row per (customer, tag), so that segments over millions of tag links are
    one indexed semi-join rather than a walk through every friendship."""

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="tag_links"
    )
    tag = models.ForeignKey(
        Tag, verbose_name=_("tag"), on_delete=models.CASCADE, related_name="customer_links"
    )
    created_at = models.DateTimeField(_("tagged at"), auto_now_add=True)

    data_scope_owner = "customer__owner"

    class Meta:
        verbose_name = _("customer tag")
        verbose_name_plural = _("customer tags")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "customer", "tag"], name="customertag_unique_customer_tag"
            )
        ]
        indexes = [models.Index(fields=["tenant", "tag", "customer"], name="customertag_by_tag")]

    def __str__(self) -> str:
        return f"{self.customer}: {self.tag}"


class CustomField(TenantScopedModel):
    """A tenant's own customer attribute (e.g. 肤质, 会员卡号), typed so that segments can
    compare it: text, number, date, one choice or several."""

    class Type(models.TextChoices):
        TEXT = "text", _("text")
        NUMBER = "number", _("number")
        DATE = "date", _("date")
        CHOICE = "choice", _("single choice")
        MULTI_CHOICE = "multi_choice", _("multiple choice")

    key = models.SlugField(
        _("key"), max_length=40, help_text=_("Used in rules, imports and the API")
    )
    label = models.CharField(_("label"), max_length=60)
    type = models.CharField(_("type"), max_length=16, choices=Type.choices, default=Type.TEXT)
    choices = models.JSONField(_("choices"), default=list, blank=True)
    help_text = models.CharField(_("help text"), max_length=200, blank=True)
    order = models.PositiveIntegerField(_("order"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("custom field")
        verbose_name_plural = _("custom fields")
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="customfield_unique_key")
        ]

    def __str__(self) -> str:
        return self.label


class CustomerNote(TenantScopedModel):
    """A note or a follow-up (跟进记录) on a customer; a follow-up may set the next contact,
    which becomes a task for its staff."""

    class Kind(models.TextChoices):
        NOTE = "note", _("note")
        CALL = "call", _("phone call")
        CHAT = "chat", _("chat")
        VISIT = "visit", _("visit")
        MEETING = "meeting", _("meeting")
        OTHER = "other", _("other follow-up")

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="notes"
    )
    author = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("author"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="customer_notes",
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.NOTE)
    content = models.TextField(_("content"))
    happened_at = models.DateTimeField(_("happened at"))
    next_contact_at = models.DateTimeField(_("next contact"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    data_scope_owner = "customer__owner"

    class Meta:
        verbose_name = _("follow-up")
        verbose_name_plural = _("follow-ups")
        ordering = ["-happened_at", "-id"]
        indexes = [models.Index(fields=["tenant", "customer", "happened_at"], name="note_customer")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.content[:40]}"


class LifecyclePolicy(TenantScopedModel):
    """A tenant's rules for the lifecycle stage, in days since the add and since the last
    interaction (documented in docs/customers.md)."""

    new_days = models.PositiveIntegerField(
        _("new for (days)"), default=7, help_text=_("A customer added within this many days is new")
    )
    silent_after_days = models.PositiveIntegerField(
        _("silent after (days)"),
        default=14,
        help_text=_("No interaction for this many days: silent"),
    )
    at_risk_after_days = models.PositiveIntegerField(
        _("at risk after (days)"),
        default=30,
        help_text=_("No interaction for this many days: at risk"),
    )
    churned_after_days = models.PositiveIntegerField(
        _("churned after (days)"),
        default=90,
        help_text=_("No interaction for this many days, or no staff left: churned"),
    )
    # Event types that count as an interaction; empty means the built-in list.
    interaction_types = models.JSONField(_("interaction event types"), default=list, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("lifecycle rules")
        verbose_name_plural = _("lifecycle rules")
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="lifecyclepolicy_one_per_tenant")
        ]

    def __str__(self) -> str:
        return str(_("lifecycle rules"))


class AutoTagRule(TenantScopedModel):
    """Put a tag on every customer who matches a rule (the segment rule language), e.g.
    "price tier bought: 9.9 trial"; optionally take it off those who stop matching."""

    name = models.CharField(_("name"), max_length=100)
    tag = models.ForeignKey(
        Tag, verbose_name=_("tag"), on_delete=models.CASCADE, related_name="auto_rules"
    )
    rules = models.JSONField(_("rules"), default=dict)
    remove_when_unmatched = models.BooleanField(_("remove when no longer matching"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    last_run_at = models.DateTimeField(_("last run"), null=True, blank=True)
    last_tagged = models.PositiveIntegerField(_("tagged at the last run"), default=0)
    last_untagged = models.PositiveIntegerField(_("untagged at the last run"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("auto-tag rule")
        verbose_name_plural = _("auto-tag rules")
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class ChurnAlert(TenantScopedModel):
    """A friendship ended (流失提醒): who, when, and the context to win the customer back."""

    class Kind(models.TextChoices):
        DELETED_BY_CUSTOMER = "by_customer", _("the customer deleted the staff")
        DELETED_BY_STAFF = "by_staff", _("the staff deleted the customer")

    class Status(models.TextChoices):
        OPEN = "open", _("open")
        CONTACTED = "contacted", _("contacted")
        RECOVERED = "recovered", _("recovered")
        CLOSED = "closed", _("closed")

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="churn_alerts"
    )
    follow = models.ForeignKey(
        Follow, verbose_name=_("friendship"), on_delete=models.CASCADE, related_name="churn_alerts"
    )
    staff = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("staff"),
        on_delete=models.PROTECT,
        related_name="churn_alerts",
    )
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    occurred_at = models.DateTimeField(_("deleted at"))
    source_state = models.CharField(_("source state"), max_length=STATE_MAX_LENGTH, blank=True)
    tenure_days = models.PositiveIntegerField(_("friends for (days)"), default=0)
    last_interaction_at = models.DateTimeField(_("last interaction"), null=True, blank=True)
    value_fen = models.BigIntegerField(_("value (fen)"), default=0)
    other_follows = models.PositiveIntegerField(
        _("other staff still friends"), default=0, help_text=_("0 means the brand lost them")
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN
    )
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    data_scope_owner = "staff"

    class Meta:
        verbose_name = _("churn alert")
        verbose_name_plural = _("churn alerts")
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "follow", "occurred_at"], name="churnalert_unique_deletion"
            )
        ]
        indexes = [models.Index(fields=["tenant", "kind", "status"], name="churnalert_kind_status")]

    def __str__(self) -> str:
        return f"{self.customer} ✕ {self.staff}"


class Handover(TenantScopedModel):
    """Customers handed from one staff to another through WeCom's transfer APIs: in service
    (在职转接: ``transfer_customer``) or after a departure (离职继承)."""

    class Kind(models.TextChoices):
        IN_SERVICE = "in_service", _("in-service transfer")
        RESIGNED = "resigned", _("departed staff's customers")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SUBMITTED = "submitted", _("submitted to WeCom")
        FINISHED = "finished", _("finished")
        FAILED = "failed", _("failed")

    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    from_staff = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("from"),
        on_delete=models.PROTECT,
        related_name="handovers_out",
    )
    to_staff = models.ForeignKey(
        "tenancy.Staff", verbose_name=_("to"), on_delete=models.PROTECT, related_name="handovers_in"
    )
    message = models.CharField(
        _("message to the customer"),
        max_length=200,
        blank=True,
        help_text=_("In-service transfers only; WeCom's default when empty"),
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    created_by = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    data_scope_owner = "from_staff"

    class Meta:
        verbose_name = _("hand-over")
        verbose_name_plural = _("hand-overs")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_staff} → {self.to_staff}"


class HandoverItem(TenantScopedModel):
    """One customer in a hand-over and WeCom's answer for them."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        WAITING = "waiting", _("waiting for the customer")  # WeCom status 2
        SUCCEEDED = "succeeded", _("taken over")  # 1
        REFUSED = "refused", _("refused by the customer")  # 3
        LIMIT_EXCEEDED = "limit", _("takeover staff at the customer limit")  # 4
        FAILED = "failed", _("failed")

    handover = models.ForeignKey(
        Handover, verbose_name=_("hand-over"), on_delete=models.CASCADE, related_name="items"
    )
    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        on_delete=models.CASCADE,
        related_name="handover_items",
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    errcode = models.IntegerField(_("errcode"), null=True, blank=True)
    detail = models.CharField(_("detail"), max_length=255, blank=True)
    takeover_at = models.DateTimeField(_("taken over at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    data_scope_owner = "handover__from_staff"

    class Meta:
        verbose_name = _("hand-over customer")
        verbose_name_plural = _("hand-over customers")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "handover", "customer"], name="handoveritem_unique_customer"
            )
        ]
        indexes = [models.Index(fields=["tenant", "status"], name="handoveritem_status")]

    def __str__(self) -> str:
        return f"{self.customer}: {self.get_status_display()}"


class CustomerMerge(TenantScopedModel):
    """A record of two customer records becoming one: which was kept, which was folded in,
    why, and a snapshot of the folded record so nothing of it is lost."""

    class Reason(models.TextChoices):
        UNIONID = "unionid", _("same unionid")
        PHONE = "phone", _("same verified phone")
        MANUAL = "manual", _("merged by staff")

    survivor = models.ForeignKey(
        Customer, verbose_name=_("kept customer"), on_delete=models.CASCADE, related_name="merges"
    )
    merged_customer_id = models.BigIntegerField(_("merged customer id"))
    merged_external_userid = models.CharField(_("merged external userid"), max_length=64)
    reason = models.CharField(_("reason"), max_length=10, choices=Reason.choices)
    snapshot = models.JSONField(_("snapshot of the merged record"), default=dict)
    merged_by = models.ForeignKey(
        "tenancy.Staff",
        verbose_name=_("merged by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("merged at"), auto_now_add=True)

    data_scope_owner = "survivor__owner"

    class Meta:
        verbose_name = _("customer merge")
        verbose_name_plural = _("customer merges")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "merged_customer_id"], name="customermerge_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.merged_external_userid} → {self.survivor}"
