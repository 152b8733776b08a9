"""Tenants (brands), their departments, staff, roles and API keys.

Only ``siyu.tenancy.services`` writes these tables.
"""

from __future__ import annotations

import fnmatch

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from siyu.core.crypto import EncryptedTextField, mask_secret
from siyu.core.scoping import DataScope, TenantScopedModel


class Tenant(models.Model):
    """One brand, i.e. one WeCom corp. Every row of business data belongs to exactly one."""

    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=50, unique=True)
    is_active = models.BooleanField(_("active"), default=True)
    wecom_corp_id = models.CharField(_("WeCom corp id"), max_length=64, blank=True)
    # Secrets: encrypted at rest, shown back only masked (see masked_secrets()).
    wecom_contact_secret = EncryptedTextField(_("customer-contact secret"), blank=True)
    wecom_callback_token = EncryptedTextField(_("callback token"), blank=True)
    wecom_callback_aes_key = EncryptedTextField(_("callback EncodingAESKey"), blank=True)
    # A self-built app (自建应用): reads the directory and sends app messages to staff.
    wecom_agent_id = models.CharField(_("app AgentId"), max_length=20, blank=True)
    wecom_agent_secret = EncryptedTextField(_("app secret"), blank=True)
    # Tenant-level settings later issues read (e.g. mass-message frequency caps).
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def masked_secrets(self) -> dict[str, str]:
        return {
            "wecom_contact_secret": mask_secret(self.wecom_contact_secret),
            "wecom_callback_token": mask_secret(self.wecom_callback_token),
            "wecom_callback_aes_key": mask_secret(self.wecom_callback_aes_key),
            "wecom_agent_secret": mask_secret(self.wecom_agent_secret),
        }


class Department(TenantScopedModel):
    """A WeCom department; the unit of the "department" data scope."""

    wecom_id = models.BigIntegerField(_("WeCom department id"), null=True, blank=True)
    name = models.CharField(_("name"), max_length=100)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
    )

    class Meta:
        verbose_name = _("department")
        verbose_name_plural = _("departments")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "wecom_id"],
                condition=models.Q(wecom_id__isnull=False),
                name="department_unique_wecom_id",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Role(TenantScopedModel):
    """A named set of permissions with a data scope.

    Permissions are Django permission names (``app_label.codename``) or glob patterns of them
    (``customers.*``, ``*.view_*``) so that a role keeps its meaning as later capabilities add
    models and permissions.
    """

    code = models.SlugField(_("code"), max_length=40)
    name = models.CharField(_("name"), max_length=60)
    permissions = models.JSONField(_("permissions"), default=list, blank=True)
    data_scope = models.CharField(
        _("data scope"), max_length=12, choices=DataScope.choices, default=DataScope.OWN
    )
    is_builtin = models.BooleanField(_("built in"), default=False)

    class Meta:
        verbose_name = _("role")
        verbose_name_plural = _("roles")
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="role_unique_code")]

    def __str__(self) -> str:
        return self.name

    def grants(self, permission: str) -> bool:
        return any(fnmatch.fnmatchcase(permission, pattern) for pattern in self.permissions)


class Staff(TenantScopedModel):
    """A WeCom member of the brand, optionally able to log in to the console."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        DEPARTED = "departed", _("departed")

    wecom_userid = models.CharField(_("WeCom userid"), max_length=64)
    name = models.CharField(_("name"), max_length=64)
    department = models.ForeignKey(
        Department,
        verbose_name=_("department"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="staff_members",
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    roles = models.ManyToManyField(Role, verbose_name=_("roles"), blank=True, related_name="staff")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("console login"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="staff",
    )
    direct_leader = models.ForeignKey(
        "self",
        verbose_name=_("direct leader"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="direct_reports",
        help_text=_("WeCom's direct_leader: who is told when this staff loses a customer"),
    )
    departed_at = models.DateTimeField(_("departed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    data_scope_owner = "self"

    class Meta:
        verbose_name = _("staff")
        verbose_name_plural = _("staff")
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "wecom_userid"], name="staff_unique_wecom_userid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.wecom_userid})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class ApiKey(TenantScopedModel):
    """A tenant's key for the REST API: shown once, stored as a SHA-256 hash, revocable.

    With ``staff`` set, the key acts as that staff member (their data scope and permissions
    also apply); without, it sees the whole tenant within its scopes.
    """

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    staff = models.ForeignKey(
        Staff,
        verbose_name=_("acts as staff"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
