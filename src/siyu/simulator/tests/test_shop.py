"""The simulated shop: orders reach a real Siyu server through the signed webhook, refunds and
cancellations follow as newer versions, and buyers who add a staff member later are linked.

The shop posts its orders over HTTP to this test's Siyu server (``live_server``). Siyu then
learns the brand's customers from the emulator by a full sync, through its real WeCom client,
and links the orders their buyers placed before. (A sync after the back-fill rather than
callbacks during it: the back-fill moves the emulator's clock, and callbacks processed
meanwhile now and then fail WeCom's token check, which would leave customers unknown.)
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from siyu.commerce import services as commerce
from siyu.commerce.api import signature_of
from siyu.commerce.models import Order, OrderLine, Refund
from siyu.simulator import Simulator
from siyu.simulator.cli import run_simulate_cli
from siyu.simulator.model import default_behaviours
from siyu.simulator.shop import TRIAL, Shop, ShopRates, ShopWebhook, shop_of
from siyu.simulator.shop import signature_of as shop_signature_of
from siyu.simulator.tests.conftest import AES_KEY, CONTACT_SECRET, STAFF, START, TOKEN, FakeControl
from siyu.testing.factories import TenantFactory
from siyu.wecom.emulator import EmulatorControl, EmulatorServer, FakeClock, World
from siyu.wecom.sync import sync_tenant

# A short run shows every case: customers come back often, orders are left unpaid and
# refunded far more than a real shop's few percent, refunds within a day.
BUSY = ShopRates(repurchase=0.2, unpaid=0.1, refund=0.25, refund_within_days=1.0)
SEED = 5


def total(reports, name):
    return sum(r.extra.get(name, 0) for r in reports)


class Brand:
    """A tenant of the live Siyu server, its corp on an emulator of its own (the same seed
    of ids for every brand), and the shop's webhook secret. The corp has no callback URL:
    Siyu learns its customers by a sync (see the module docstring)."""

    def __init__(self, live_server, slug: str) -> None:
        self.slug = slug
        self.corp_id = f"ww{slug.replace('-', '')}shop00001"[:18]
        self.url = live_server.url
        self.tenant = TenantFactory(
            slug=slug,
            wecom_corp_id=self.corp_id,
            wecom_contact_secret=CONTACT_SECRET,
            wecom_callback_token=TOKEN,
            wecom_callback_aes_key=AES_KEY,
        )
        self.secret = commerce.rotate_webhook_secret(self.tenant)
        self.emulator = EmulatorServer(World(seed="shop", clock=FakeClock(START))).start()
        self.control = EmulatorControl(self.emulator.base_url, corp_id=self.corp_id)
        self.control.setup_corp(
            self.corp_id,
            contact_secret=CONTACT_SECRET,
            token=TOKEN,
            encoding_aes_key=AES_KEY,
            staff=STAFF,
        )

    def simulate(self, *, seed: int = SEED, days: int = 3, scale: float = 0.05):
        """Back-fill ``days`` days with the default behaviours, the shop connected (every
        order delivered when it returns). Returns the simulator, its shop and the reports."""
        simulator = Simulator(self.control, self.corp_id, seed=seed, scale=scale)
        shop = shop_of(simulator.behaviours)
        shop.rates = BUSY
        with ShopWebhook(self.url, self.slug, self.secret) as webhook:
            shop.connect(webhook)
            reports = simulator.backfill(days)
        return simulator, shop, reports

    def sync(self) -> None:
        """Siyu reads the corp's staff and customers from WeCom (the emulator)."""
        sync_tenant(self.tenant, full=True)

    def orders(self):
        return Order.objects.for_tenant(self.tenant)

    def close(self) -> None:
        self.control.close()
        self.emulator.stop()


@pytest.fixture
def brands(live_server, settings):
    """Make brands on the live server; ``brands("slug")``."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "sh"}
    }
    made: list[Brand] = []

    def make(slug: str) -> Brand:
        brand = Brand(live_server, slug)
        settings.WECOM_API_BASE = f"{brand.emulator.base_url}/cgi-bin"  # one brand at a time
        made.append(brand)
        return brand

    yield make
    for brand in made:
        brand.close()


@pytest.mark.django_db(transaction=True)
def test_the_shops_orders_refunds_and_cancellations_arrive_in_siyu(brands):
    # given a brand on Siyu whose shop has its webhook secret
    brand = brands("shop-a")
    # when three days are simulated
    _, _, reports = brand.simulate()
    # then every order placed is in Siyu, none refused
    orders = brand.orders()
    assert sum(r.errors for r in reports) == 0
    assert orders.count() == total(reports, "orders") > 20
    assert all(o.shop_order_id.startswith(f"SIM{SEED}-") for o in orders)
    # funnel buyers mostly take the 9.9-yuan trial; customers came back for more
    lines = OrderLine.objects.for_tenant(brand.tenant)
    trials = lines.filter(price_tier="trial")
    assert trials.count() > lines.count() / 2
    assert {(line.sku, line.unit_price_fen, line.amount_fen, line.category) for line in trials} == {
        (TRIAL.sku, 990, 990, "精华")
    }
    assert total(reports, "repurchases") > 0
    assert lines.filter(price_tier="core").exists()
    assert all(line.amount_fen == line.quantity * line.unit_price_fen for line in lines)
    # amounts in fen: what was paid is the revenue the shop counted
    paid = orders.exclude(status__in=["created", "cancelled"])
    assert sum(o.paid_fen for o in paid) == total(reports, "revenue_fen")
    assert all(o.paid_fen == o.total_fen for o in paid)
    # unpaid orders were cancelled once the payment window closed
    cancelled = orders.filter(status="cancelled")
    assert cancelled.count() == total(reports, "cancelled") > 0
    assert all(o.paid_fen == 0 and o.paid_at is None and o.cancelled_at for o in cancelled)
    # refunds came as newer versions of their orders; the status followed
    refunds = Refund.objects.for_tenant(brand.tenant).select_related("order")
    assert refunds.count() == total(reports, "refunds") > 0
    assert sum(r.amount_fen for r in refunds) == total(reports, "refunded_fen")
    for refund in refunds:
        order = refund.order
        assert order.refunded_fen == refund.amount_fen
        full = refund.amount_fen == order.paid_fen
        assert order.status == ("refunded" if full else "partially_refunded")
        assert refund.refunded_at > order.paid_at


@pytest.mark.django_db(transaction=True)
def test_buyers_who_add_a_staff_member_later_are_linked_to_their_orders(brands):
    # given orders placed by buyers, some of whom added a staff member afterwards
    brand = brands("shop-link")
    simulator, shop, _ = brand.simulate()
    assert not brand.orders().filter(customer__isnull=False).exists()  # nobody known yet
    # when Siyu learns the customers
    brand.sync()
    # then the emulator knows each customer by the unionid the shop saw ...
    emulated = brand.control.snapshot(brand.corp_id)["corps"][brand.corp_id]["customers"]
    unionids = {c.external_userid: shop.identity(c.person).unionid for c in simulator.customers}
    assert {e: emulated[e]["unionid"] for e in unionids} == unionids
    # ... so every order that named a customer's unionid is linked to that customer
    orders = brand.orders().select_related("customer")
    named = [o for o in orders if o.buyer_unionid in set(unionids.values())]
    assert len(named) > 5
    by_unionid = {u: e for e, u in unionids.items()}
    assert [o.customer and o.customer.external_userid for o in named] == [
        by_unionid[o.buyer_unionid] for o in named
    ]
    # including the orders paid before the buyer added a staff member (linked afterwards)
    before = [o for o in named if o.paid_at and o.paid_at < o.customer.first_added_at]
    assert len(before) > 3
    # buyers who never added anybody stay unmatched
    assert all(o.customer is None for o in orders if o.buyer_unionid not in by_unionid)


@pytest.mark.django_db(transaction=True)
def test_the_same_seed_places_the_same_orders(brands):
    def placed(brand):
        brand.simulate(days=2)
        return [
            (
                o.shop_order_id,
                o.status,
                o.total_fen,
                o.paid_fen,
                o.refunded_fen,
                o.placed_at,
                o.paid_at,
                o.buyer_unionid,
                o.buyer_phone_hash,
                o.buyer_external_userid,
                o.channel,
                [(line.sku, line.quantity) for line in o.lines.all()],
            )
            for o in brand.orders().order_by("shop_order_id").prefetch_related("lines")
        ]

    first = placed(brands("shop-one"))
    assert first and first == placed(brands("shop-two"))


# --- without a server ---------------------------------------------------------------------------
def test_without_a_webhook_secret_the_shop_changes_nothing():
    def calls(behaviours):
        control = FakeControl()
        Simulator(control, seed=11, scale=0.2, behaviours=behaviours).backfill(3)
        return control.calls

    with_shop = default_behaviours()
    assert shop_of(with_shop) is not None  # the shop runs by default ...
    without = [b for b in with_shop if not isinstance(b, Shop)]
    assert calls(with_shop) == calls(without)  # ... and draws nothing while it has no secret


def answering(*statuses: int | type[Exception]):
    """A transport answering the given statuses (or raising) in turn, then 200; records the
    requests."""
    requests: list[httpx.Request] = []
    answers = iter(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = next(answers, 200)
        if isinstance(answer, type):
            raise answer("refused", request=request)
        if answer == 200:
            return httpx.Response(200, json={"outcome": "created", "order_id": 1})
        return httpx.Response(answer, json={"code": "invalid_order", "message": "no"})

    return httpx.MockTransport(handle), requests


def test_orders_are_signed_as_siyu_checks_and_connection_errors_are_retried():
    transport, requests = answering(httpx.ConnectError, httpx.ConnectError, 503)
    webhook = ShopWebhook("http://siyu.test/", "brand", "s3cret", backoff=0, transport=transport)
    with webhook:
        delivery = webhook.send({"order_id": "SIM1-0000001", "status": "paid"})
    assert delivery.ok and delivery.outcome == "created"
    assert len(requests) == 4
    request = requests[-1]
    assert str(request.url) == "http://siyu.test/api/v1/commerce/orders"
    assert request.headers["X-Siyu-Tenant"] == "brand"
    assert request.headers["X-Siyu-Signature"] == signature_of("s3cret", request.content)
    assert shop_signature_of("k", b"{}") == signature_of("k", b"{}")
    assert json.loads(request.content)["order_id"] == "SIM1-0000001"


def test_refusals_and_an_unreachable_siyu_are_counted_never_raised():
    # given Siyu refusing the first orders, then unreachable for good
    refusals = [422] * 5
    transport, requests = answering(*refusals, *[httpx.ConnectError] * 1000)
    shop = Shop(rates=BUSY)
    webhook = ShopWebhook(
        "http://siyu.test",
        "brand",
        "s",
        backoff=0,
        cool_off=3600,
        concurrency=1,  # one order at a time: the requests below are counted exactly
        transport=transport,
    )
    behaviours = [*(b for b in default_behaviours() if not isinstance(b, Shop)), shop]
    with webhook:
        shop.connect(webhook)
        simulator = Simulator(FakeControl(), seed=3, scale=0.1, behaviours=behaviours)
        # when
        reports = simulator.backfill(2)
    # then the simulation went on; every order it could not deliver is an error
    assert total(reports, "orders") > 10
    sent = total(reports, "orders") + total(reports, "cancelled") + total(reports, "refunds")
    assert sum(r.errors for r in reports) == total(reports, "order_errors") == sent
    # four attempts for the first order that met a dead line, then none while it stays dead
    assert len(requests) == len(refusals) + 4


def test_the_cli_says_once_that_the_shop_is_off_without_a_secret(emulator, corp, capsys):
    status = run_simulate_cli(
        emulator_url=emulator.base_url,
        corp_id=None,
        seed=1,
        days=1,
        follow=False,
        speed=60.0,
        scale=0.05,
    )
    out = capsys.readouterr().out
    assert status == 0
    assert out.count("Shop: off") == 1
    day_lines = [line for line in out.splitlines() if "passers-by 500" in line]
    assert day_lines and not any("orders" in line for line in day_lines)


def test_the_cli_wants_the_url_and_tenant_with_a_secret(capsys):
    status = run_simulate_cli(
        emulator_url="http://127.0.0.1:9",
        corp_id=None,
        seed=1,
        days=1,
        follow=False,
        speed=60.0,
        scale=0.05,
        shop_url="http://127.0.0.1:8000",
        shop_secret="s",
    )
    assert status == 2
    assert "--shop-tenant" in capsys.readouterr().err


def test_the_product_matrix_is_seed_004s():
    from siyu.simulator.shop import PRODUCTS

    tiers = Counter(p.price_tier for p in PRODUCTS)
    assert tiers == {"trial": 1, "core": 4, "premium": 1}
    assert TRIAL.price_fen == 990
    assert len({p.sku for p in PRODUCTS}) == len(PRODUCTS)
