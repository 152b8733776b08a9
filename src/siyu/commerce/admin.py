"""Console pages of the commerce domain (the Commerce section): orders, products, the shop's
webhook.

* Orders — read-only: they come only from the shop (``services.ingest_order``). The list
  shows amounts in yuan (stored as integer fen), filters by status, paid day, channel and the
  price tier bought (over the order's lines), and searches the exact shop order id; an
  order's page shows its lines and refunds. A sales member sees the orders of the customers
  they own (``Order.data_scope_owner``, applied by ``TenantScopedAdmin``).
* Products — created and changed through ``services.upsert_product``; the price is typed in
  yuan and stored in fen exactly (a ``Decimal``, never a float); the SKU is fixed once
  created; a product is taken off sale, never deleted.
* Shop webhook — whether a signing secret is set and since when, the URL and headers the
  shop sends, and a button that generates a new secret (``services.rotate_webhook_secret``),
  shown on the answer to that POST and never again: it is stored encrypted and no page reads
  it back. The page has no add, change or delete views at all (the row's only field is the
  secret).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import BigIntegerField, Exists, ExpressionWrapper, F, OuterRef
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from unfold.contrib.filters.admin import DropdownFilter, TextFilter
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminDecimalFieldWidget

from siyu.commerce import services
from siyu.commerce.api import SIGNATURE_HEADER, TENANT_HEADER, signature_of
from siyu.commerce.models import Order, OrderLine, PriceTier, Product, Refund, ShopConnection
from siyu.core.console import (
    DayRangeFilter,
    ReadOnlyAdminMixin,
    ServiceModelForm,
    TenantScopedAdmin,
    TenantScopedInline,
    add_model_page,
    add_page,
    console_actor,
)
from siyu.core.errors import Conflict, ServiceError

STATUS_COLOURS = {  # a cancelled order keeps the neutral grey
    Order.Status.CREATED: "info",
    Order.Status.PAID: "success",
    Order.Status.PARTIALLY_REFUNDED: "warning",
    Order.Status.REFUNDED: "danger",
}
FEN_PER_YUAN = 100
MAX_PRICE_YUAN = Decimal(services.MAX_FEN) / FEN_PER_YUAN


def yuan(fen: int) -> str:
    """Integer fen as yuan with two decimals (9.90, 1,280.00), by integer arithmetic."""
    whole, cents = divmod(abs(fen), FEN_PER_YUAN)
    return f"{'-' if fen < 0 else ''}{whole:,}.{cents:02d}"


def customer_link(customer: Any) -> str:
    """The customer's 360 page, or a note that the shop's buyer is nobody known yet."""
    if customer is None:
        return format_html('<span class="text-base-400">{}</span>', _("not matched yet"))
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    return format_html('<a href="{}" class="text-primary-600">{}</a>', url, customer)


# --- orders ------------------------------------------------------------------------------------
class PriceTierBoughtFilter(DropdownFilter):
    """Orders with at least one line of this price tier (the tier when sold)."""

    title = _("price tier bought")
    parameter_name = "price_tier"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(PriceTier.choices)

    def queryset(self, request: HttpRequest, queryset):
        value = self.value()
        if value not in PriceTier.values:
            return queryset
        lines = OrderLine.objects.for_tenant(console_actor(request).tenant_id).filter(
            order_id=OuterRef("pk"), price_tier=value
        )
        return queryset.filter(Exists(lines))


class ChannelFilter(TextFilter):
    """The shop's sales channel, matched exactly: listing the distinct channels of every
    order would read the whole table on each page."""

    title = _("sales channel")
    parameter_name = "channel"

    def queryset(self, request: HttpRequest, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(channel=value) if value else queryset


class OrderLineInline(TenantScopedInline):
    model = OrderLine
    fk_name = "order"
    fields = (
        "sku",
        "name",
        "price_tier",
        "category",
        "quantity",
        "unit_price",
        "amount",
    )
    readonly_fields = fields

    @display(description=_("unit price (yuan)"))
    def unit_price(self, line: OrderLine) -> str:
        return yuan(line.unit_price_fen)

    @display(description=_("amount (yuan)"))
    def amount(self, line: OrderLine) -> str:
        return yuan(line.amount_fen)


class RefundInline(TenantScopedInline):
    model = Refund
    fk_name = "order"
    fields = ("shop_refund_id", "amount", "refunded_at", "reason")
    readonly_fields = fields

    @display(description=_("amount (yuan)"))
    def amount(self, refund: Refund) -> str:
        return yuan(refund.amount_fen)


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = (
        "shop_order_id",
        "customer_name",
        "status_label",
        "total",
        "paid",
        "refunded",
        "net",
        "channel",
        "paid_at",
    )
    list_filter = (
        "status",
        ("paid_at", DayRangeFilter),
        ChannelFilter,
        PriceTierBoughtFilter,
    )
    list_filter_submit = True
    search_fields = ("shop_order_id",)  # shows the box; ``get_search_results`` does the work
    search_help_text = _("The shop's order id, exactly")
    list_select_related = ("customer",)
    show_full_result_count = False  # one COUNT per page is enough on millions of orders
    inlines = (OrderLineInline, RefundInline)
    fieldsets = (
        (None, {"fields": ("shop_order_id", "customer_name", "status", "channel", "source")}),
        (_("Amounts (yuan)"), {"fields": ("total", "paid", "refunded", "net")}),
        (
            _("Buyer, as the shop knows them"),
            {"fields": ("buyer_external_userid", "buyer_unionid")},
        ),
        (
            _("Times"),
            {
                "fields": (
                    "placed_at",
                    "paid_at",
                    "cancelled_at",
                    "shop_updated_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = ("customer_name", "total", "paid", "refunded", "net")

    def get_queryset(self, request: HttpRequest):
        net = ExpressionWrapper(F("paid_fen") - F("refunded_fen"), output_field=BigIntegerField())
        return super().get_queryset(request).annotate(net_value=net)

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        """The exact shop order id: found through the unique index, not a scan of every id."""
        term = (search_term or "").strip()
        return (queryset.filter(shop_order_id=term), False) if term else (queryset, False)

    @display(description=_("customer"), ordering="customer__name")
    def customer_name(self, order: Order) -> str:
        return customer_link(order.customer)

    @display(description=_("status"), ordering="status", label=STATUS_COLOURS)
    def status_label(self, order: Order):
        return order.status, order.get_status_display()

    @display(description=_("amount (yuan)"), ordering="total_fen")
    def total(self, order: Order) -> str:
        return yuan(order.total_fen)

    @display(description=_("paid (yuan)"), ordering="paid_fen")
    def paid(self, order: Order) -> str:
        return yuan(order.paid_fen)

    @display(description=_("refunded (yuan)"), ordering="refunded_fen")
    def refunded(self, order: Order) -> str:
        return yuan(order.refunded_fen)

    @display(description=_("net (yuan)"), ordering="net_value")
    def net(self, order: Order) -> str:
        return yuan(order.net_fen)


# --- products ----------------------------------------------------------------------------------
class ProductForm(ServiceModelForm):
    """The product's fields with the price in yuan; ``price_fen`` is never a form field."""

    price_yuan = forms.DecimalField(
        label=capfirst(_("list price (yuan)")),
        min_value=Decimal(0),
        max_value=MAX_PRICE_YUAN,
        decimal_places=2,
        initial=Decimal("0.00"),
        widget=UnfoldAdminDecimalFieldWidget(),
        help_text=_("In yuan, at most two decimals (9.90)"),
    )

    class Meta:
        model = Product
        fields = ("sku", "name", "category", "price_tier", "price_yuan", "active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            price = Decimal(self.instance.price_fen) / FEN_PER_YUAN
            self.initial["price_yuan"] = price.quantize(Decimal("0.01"))

    def price_fen(self) -> int:
        """The cleaned price in fen: exact, since the yuan have at most two decimals."""
        return int(self.cleaned_data["price_yuan"] * FEN_PER_YUAN)


# The service names its fields as the API does; the form's fields are these.
PRODUCT_FORM_FIELDS = {"price_fen": "price_yuan"}


@admin.register(Product)
class ProductAdmin(TenantScopedAdmin):
    form = ProductForm
    list_display = ("sku", "name", "category", "price_tier", "list_price", "active")
    list_filter = ("price_tier", "category", "active")
    search_fields = ("sku", "name")
    actions = ("take_off_sale", "put_on_sale")

    def get_fields(self, request: HttpRequest, obj: Product | None = None):
        fields = ["sku", "name", "category", "price_tier", "price_yuan", "active"]
        if obj is not None and not self.has_change_permission(request, obj):
            fields[fields.index("price_yuan")] = "list_price"  # read-only: no form field
        return fields if obj is None else [*fields, "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None):
        if obj is None:
            return ()
        return ("sku", "list_price", "created_at", "updated_at")  # a SKU is the shop's key

    @display(description=_("list price (yuan)"), ordering="price_fen")
    def list_price(self, product: Product) -> str:
        return yuan(product.price_fen)

    def save_via_service(
        self, request: HttpRequest, obj: Product, form: Any, change: bool
    ) -> Product:
        tenant_id = console_actor(request).tenant_id
        data = form.cleaned_data
        sku = self.fresh_copy(request, obj).sku if change else data["sku"].strip()
        if not change and Product.objects.for_tenant(tenant_id).filter(sku=sku).exists():
            # The service upserts by SKU; adding must not silently change another product.
            raise Conflict(_("A product with this SKU already exists"), details={"sku": sku})
        try:
            product, _created = services.upsert_product(
                tenant_id,
                sku=sku,
                name=data["name"],
                price_fen=form.price_fen(),
                price_tier=data.get("price_tier") or "",
                category=data.get("category") or "",
                active=data.get("active", False),
            )
        except ServiceError as error:
            raise _on_form_field(error) from error
        return product

    def _set_on_sale(self, request: HttpRequest, queryset: Any, active: bool) -> int:
        tenant_id = console_actor(request).tenant_id

        def set_on_sale(product: Product) -> None:
            services.upsert_product(
                tenant_id,
                sku=product.sku,
                name=product.name,
                price_fen=product.price_fen,
                price_tier=product.price_tier,
                category=product.category,
                active=active,
            )

        return self.apply_service(
            request,
            queryset,
            set_on_sale,
            lambda count: (
                ngettext("%(count)d product updated.", "%(count)d products updated.", count)
                % {"count": count}
            ),
        )

    @action(description=_("Take off sale"), permissions=["change"])
    def take_off_sale(self, request: HttpRequest, queryset: Any) -> None:
        self._set_on_sale(request, queryset, False)

    @action(description=_("Put on sale"), permissions=["change"])
    def put_on_sale(self, request: HttpRequest, queryset: Any) -> None:
        self._set_on_sale(request, queryset, True)


def _on_form_field(error: ServiceError) -> ServiceError:
    """The service's error, naming the form field it is about (``{"field": "price_fen"}`` →
    ``{"price_yuan": ...}``) so the form shows it there."""
    details = error.details if isinstance(error.details, dict) else {}
    name = details.get("field")
    if not isinstance(name, str):
        return error
    return type(error)(
        error.message,
        code=error.code,
        details={PRODUCT_FORM_FIELDS.get(name, name): details.get("value")},
    )


# --- the shop's webhook ------------------------------------------------------------------------
@admin.register(ShopConnection)
class ShopConnectionAdmin(TenantScopedAdmin):
    """One page per tenant: the webhook's settings and the button that makes a new secret."""

    template = "commerce/shop_webhook.html"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", wrap(self.webhook_view), name=f"{name}_changelist"),
            path("rotate/", wrap(self.rotate_view), name=f"{name}_rotate"),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rotating the secret creates the row

    def may_rotate(self, request: HttpRequest) -> bool:
        return request.user.has_perm("commerce.change_shopconnection")

    def webhook_view(self, request: HttpRequest) -> HttpResponse:
        if not (self.has_view_permission(request) or self.may_rotate(request)):
            raise PermissionDenied
        return self.render_page(request)

    def rotate_view(self, request: HttpRequest) -> HttpResponse:
        """A new secret, shown on this answer only; a reload asks the browser to resubmit
        (and would make yet another secret), it never shows this one again."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.may_rotate(request):
            raise PermissionDenied
        secret = services.rotate_webhook_secret(console_actor(request).tenant_id)
        return self.render_page(request, new_secret=secret)  # admin_view: never cached

    def render_page(self, request: HttpRequest, *, new_secret: str | None = None) -> HttpResponse:
        tenant = console_actor(request).tenant
        # The time only: loading the row would decrypt the secret for nothing.
        set_at = (
            ShopConnection.objects.for_tenant(tenant).values_list("rotated_at", flat=True).first()
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": capfirst(_("shop webhook")),
            "secret_set_at": set_at,
            "webhook_url": request.build_absolute_uri(reverse("api:order_webhook")),
            "tenant_header": TENANT_HEADER,
            "signature_header": SIGNATURE_HEADER,
            "tenant_slug": tenant.slug,
            "may_rotate": self.may_rotate(request),
            "rotate_url": reverse("admin:commerce_shopconnection_rotate"),
            "new_secret": new_secret,
            "example_body": "{}",
            "example_signature": signature_of(new_secret, b"{}") if new_secret else "",
        }
        return TemplateResponse(request, self.template, context)


# --- the sidebar (Commerce) --------------------------------------------------------------------
add_model_page("commerce", Order, icon="receipt_long")
add_model_page("commerce", Product, icon="inventory_2")
add_page(
    "commerce",
    title=_("shop webhook"),
    icon="webhook",
    link=lambda request: reverse("admin:commerce_shopconnection_changelist"),
    allowed=lambda request: (
        request.user.has_perm("commerce.view_shopconnection")
        or request.user.has_perm("commerce.change_shopconnection")
    ),
)
