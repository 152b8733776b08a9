"""Revenue data: the shop's products and orders, matched to Siyu's customers.

Amounts are integers in fen (分). An order is the shop's record, upserted by the shop's own
id (``shop_order_id``) at the shop's version (``shop_updated_at``): an older version arriving
late changes nothing. Refunds are facts of their own, one row per shop refund id, so a refund
delivered twice counts once; ``refunded_fen`` on the order is their sum.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from siyu.core.crypto import EncryptedTextField
from siyu.core.scoping import TenantScopedModel


class PriceTier(models.TextChoices):
    """Seed 004's product matrix: a cheap first purchase, the core range, the premium range."""

    TRIAL = "trial", _("trial (low-price first purchase)")
    CORE = "core", _("core")
    PREMIUM = "premium", _("premium")


class Product(TenantScopedModel):
    sku = models.CharField(_("SKU"), max_length=64, help_text=_("The shop's product id"))
    name = models.CharField(_("name"), max_length=200)
    category = models.CharField(_("category"), max_length=100, blank=True)
    price_tier = models.CharField(
        _("price tier"), max_length=10, choices=PriceTier.choices, blank=True
    )
    price_fen = models.PositiveBigIntegerField(_("list price (fen)"), default=0)
    active = models.BooleanField(_("on sale"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "sku"], name="product_unique_sku")]

    def __str__(self) -> str:
        return self.name


class Order(TenantScopedModel):
    class Status(models.TextChoices):
        CREATED = "created", _("awaiting payment")
        PAID = "paid", _("paid")
        PARTIALLY_REFUNDED = "partially_refunded", _("partially refunded")
        REFUNDED = "refunded", _("refunded")
        CANCELLED = "cancelled", _("cancelled")

    shop_order_id = models.CharField(_("shop order id"), max_length=64)
    customer = models.ForeignKey(
        "customers.Customer",
        verbose_name=_("customer"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="orders",
    )
    # Who bought, as the shop knows them: how the order is matched to a customer, then and
    # later (a customer who adds a staff after buying is linked to their earlier orders).
    buyer_external_userid = models.CharField(_("buyer WeCom id"), max_length=64, blank=True)
    buyer_unionid = models.CharField(_("buyer unionid"), max_length=64, blank=True)
    buyer_phone_hash = models.CharField(max_length=64, blank=True, editable=False)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.CREATED
    )
    total_fen = models.PositiveBigIntegerField(_("amount (fen)"), default=0)
    paid_fen = models.PositiveBigIntegerField(_("paid (fen)"), default=0)
    refunded_fen = models.PositiveBigIntegerField(_("refunded (fen)"), default=0)
    channel = models.CharField(
        _("sales channel"), max_length=64, blank=True, help_text=_("Where the shop says it sold")
    )
    placed_at = models.DateTimeField(_("placed at"))
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)
    shop_updated_at = models.DateTimeField(
        _("shop version"), help_text=_("The shop's last change; older updates are ignored")
    )
    source = models.CharField(_("received through"), max_length=10, default="webhook")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    data_scope_owner = "customer__owner"

    class Meta:
        # "order" alone is also the sort order of tags in the catalogue (排序)
        verbose_name = pgettext_lazy("purchase", "order")
        verbose_name_plural = pgettext_lazy("purchase", "orders")
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shop_order_id"], name="order_unique_shop_order_id"
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "customer", "paid_at"], name="order_customer_paid"),
            models.Index(fields=["tenant", "status", "paid_at"], name="order_status_paid"),
            models.Index(fields=["tenant", "buyer_external_userid"], name="order_buyer_userid"),
            models.Index(fields=["tenant", "buyer_unionid"], name="order_buyer_unionid"),
            models.Index(fields=["tenant", "buyer_phone_hash"], name="order_buyer_phone"),
            # the analytics copy reads the orders changed since its last sync
            models.Index(fields=["updated_at"], name="order_updated_at"),
            # the console's order list, newest first
            models.Index(fields=["tenant", "-placed_at", "-id"], name="order_tenant_placed"),
        ]

    def __str__(self) -> str:
        return self.shop_order_id

    @property
    def net_fen(self) -> int:
        """What the brand kept: paid minus refunded."""
        return self.paid_fen - self.refunded_fen


class OrderLine(TenantScopedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(
        Product, on_delete=models.SET_NULL, null=True, blank=True, related_name="order_lines"
    )
    sku = models.CharField(_("SKU"), max_length=64)
    name = models.CharField(_("name"), max_length=200)
    # The tier and category when sold: a product moved to another tier later does not rewrite
    # what a customer bought.
    price_tier = models.CharField(
        _("price tier"), max_length=10, choices=PriceTier.choices, blank=True
    )
    category = models.CharField(_("category"), max_length=100, blank=True)
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    unit_price_fen = models.PositiveBigIntegerField(_("unit price (fen)"), default=0)
    amount_fen = models.PositiveBigIntegerField(_("amount (fen)"), default=0)
    position = models.PositiveSmallIntegerField(default=0)

    data_scope_owner = "order__customer__owner"

    class Meta:
        verbose_name = _("order line")
        verbose_name_plural = _("order lines")
        ordering = ["order_id", "position"]
        # an order's lines, within its tenant: SQLite otherwise picks the tenant index and
        # reads every line of the tenant to replace one order's
        indexes = [models.Index(fields=["tenant", "order"], name="orderline_order")]

    def __str__(self) -> str:
        return f"{self.name} × {self.quantity}"


class Refund(TenantScopedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="refunds")
    shop_refund_id = models.CharField(_("shop refund id"), max_length=64)
    amount_fen = models.PositiveBigIntegerField(_("amount (fen)"))
    refunded_at = models.DateTimeField(_("refunded at"))
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    data_scope_owner = "order__customer__owner"

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["refunded_at", "id"]
        indexes = [models.Index(fields=["tenant", "order"], name="refund_order")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shop_refund_id"], name="refund_unique_shop_refund_id"
            )
        ]

    def __str__(self) -> str:
        return self.shop_refund_id


class ShopConnection(TenantScopedModel):
    """The shop's webhook secret: the HMAC-SHA256 key that signs every order it sends."""

    webhook_secret = EncryptedTextField(_("webhook secret"))
    rotated_at = models.DateTimeField(_("secret set at"), auto_now=True)

    class Meta:
        verbose_name = _("shop connection")
        verbose_name_plural = _("shop connections")
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="shopconnection_unique_tenant")
        ]

    def __str__(self) -> str:
        return str(_("shop webhook"))
