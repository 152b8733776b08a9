"""The brand's shop: the funnel's buyers and the private domain's customers place orders, which
reach Siyu the way a real shop's do, through the signed order webhook over HTTP.

Like the WeCom emulator, the shop is an outside system: it never touches Siyu's database. It
knows its buyers by what a shop knows: the phone number given at checkout, the WeChat unionid
when the order comes through the mini-program, the WeCom external_userid when it comes
through a staff member's link in WeCom. Siyu matches the buyer to a customer itself, then or
when the buyer adds a staff member later. So that it can, the person's WeChat identity is the
shop's: the emulator creates the person's WeChat user with the unionid the shop saw
(``customer_fields``, asked by the engine when a person adds a staff member).

The product matrix is seed 004's (社群要有对应的产品矩阵): a 9.9-yuan trial product to lower the
cost of a first try (引流款), the core range the brand lives on (利润款), a premium gift set
(形象款). A funnel buyer mostly takes the trial; customers come back for the core range
(``FunnelRates.repurchase``, or ``ShopRates.repurchase`` while that is 0, times the persona's
factor), now and then for the premium set. A few orders are left unpaid and cancelled, a few
paid ones refunded later, fully or in part: the shop then sends the order again, at a newer
version (``updated_at``), with its refunds.

Without a webhook secret the shop sends nothing, draws nothing, and says so once: the
simulation is then exactly the one without a shop. Every decision is drawn from ``day.rng``
in a fixed order, whatever Siyu answers; order ids come from the seed and a counter.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import httpx

from siyu.simulator.engine import DAY, LAST_MOMENT
from siyu.simulator.model import Behaviour, DayReport, SimulatedCustomer, register_behaviour
from siyu.simulator.population import Person

if TYPE_CHECKING:
    from siyu.simulator.engine import Day

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/v1/commerce/orders"
TENANT_HEADER = "X-Siyu-Tenant"
SIGNATURE_HEADER = "X-Siyu-Signature"
BEIJING = dt.timezone(dt.timedelta(hours=8))
# Where the shop sold: its mini-program (knows the unionid), the store's till (only the phone),
# a staff member's product link in WeCom (knows the WeCom id too).
MINI_PROGRAM, STORE, WECOM = "mini_program", "store", "wecom"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_tier: str  # trial | core | premium
    price_fen: int


TRIAL = Product("SY-TRIAL-01", "修护精华体验装 5ml", "精华", "trial", 990)
CORE = (
    Product("SY-CORE-01", "修护精华液 30ml", "精华", "core", 22_900),
    Product("SY-CORE-02", "氨基酸洁面乳 120g", "洁面", "core", 8_900),
    Product("SY-CORE-03", "玻尿酸补水面膜 10片装", "面膜", "core", 12_900),
    Product("SY-CORE-04", "清透防晒乳 SPF50+ 50ml", "防晒", "core", 13_900),
)
PREMIUM = Product("SY-PREMIUM-01", "臻颜紧致修护礼盒", "礼盒", "premium", 89_900)
PRODUCTS = (TRIAL, *CORE, PREMIUM)
FULL_REFUND_REASONS = ("不想要了", "拍错了/多拍了", "使用后过敏不适", "商品破损")
PARTIAL_REFUND_REASONS = ("价保补差价", "少发赠品补偿", "物流延误补偿")


@dataclass(frozen=True)
class ShopRates:
    """How the shop's buyers behave. ``repurchase`` is each customer's daily probability of
    buying again while ``FunnelRates.repurchase`` is 0 (its default); the others are shares
    of orders."""

    repurchase: float = 0.01
    first_order_core_share: float = 0.15  # a funnel buyer skips the trial for the core range
    mini_program_share: float = 0.7  # first orders through the mini-program (else the store)
    wecom_link_share: float = 0.6  # repurchases through a staff member's link in WeCom
    premium_share: float = 0.1  # repurchases of the premium set
    second_line_share: float = 0.25  # repurchases of two products
    double_quantity_share: float = 0.2  # two of a core product
    unpaid: float = 0.03  # orders never paid, cancelled after the payment window
    refund: float = 0.04  # paid orders refunded later
    full_refund_share: float = 0.6  # of refunds: the whole order (else part of it)
    refund_within_days: float = 7.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "refund_within_days":
                if value <= 0:
                    raise ValueError("refund_within_days must be positive")
            elif not 0.0 <= value <= 1.0:
                raise ValueError(f"{item.name} is a probability: {value!r} is not in [0, 1]")


@dataclass(frozen=True)
class BuyerIdentity:
    """A person as shops know them: their phone number and WeChat unionid."""

    phone: str
    unionid: str


def signature_of(secret: str, body: bytes) -> str:
    """``X-Siyu-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """Siyu's answer to one order: ``outcome`` (created, updated, unchanged, stale) when it
    took it, else ``error`` (the status and message, or the connection error)."""

    outcome: str = ""
    status: int = 0
    error: str = ""
    answer: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.error


class ShopWebhook:
    """Posts signed orders to Siyu's webhook on one kept-alive HTTP client.

    ``send`` posts and waits; ``submit`` posts in the background (``concurrency`` orders at
    a time, a few more queued before it blocks), so that the simulation goes on while Siyu
    stores the orders. One at a time by default: against a SQLite-backed Siyu more gained
    nothing (the database's write lock is the bottleneck), and the versions of an order then
    arrive in the order they were made (the webhook would cope otherwise: it ignores older
    versions). A refusal (4xx) is answered, never raised.
    Connection errors and 502-504 are retried ``retries`` times, ``backoff`` seconds apart
    and doubling; when Siyu stays unreachable, orders fail at once for ``cool_off`` seconds,
    so that a back-fill does not crawl.
    """

    RETRY_STATUSES = (502, 503, 504)

    def __init__(
        self,
        base_url: str,
        tenant: str,
        secret: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        cool_off: float = 10.0,
        concurrency: int = 1,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not (base_url and tenant and secret):
            raise ValueError("the shop needs Siyu's URL, the tenant slug and the webhook secret")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + WEBHOOK_PATH
        self.tenant = tenant
        self._secret = secret
        self.retries = retries
        self.backoff = backoff
        self.cool_off = cool_off
        self._client = httpx.Client(
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(
                max_connections=max(1, concurrency) + 1,
                max_keepalive_connections=max(1, concurrency) + 1,
                keepalive_expiry=60,
            ),
        )
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="siyu-shop")
        self._queued = threading.BoundedSemaphore(max(1, concurrency) * 4)
        self._down_until = 0.0
        self._refusals_logged: set[int] = set()

    def __enter__(self) -> ShopWebhook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for the orders on their way, then hang up."""
        self._pool.shutdown(wait=True)
        self._client.close()

    def body_of(self, payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    def send(self, payload: dict[str, Any]) -> Delivery:
        """Post one order now and wait for Siyu's answer."""
        return self._post(payload.get("order_id"), self.body_of(payload))

    def submit(self, payload: dict[str, Any]) -> Future[Delivery]:
        """Post one order in the background (the payload is serialised now: the caller may
        change it afterwards); blocks while too many orders are on their way."""
        body = self.body_of(payload)
        self._queued.acquire()
        try:
            future = self._pool.submit(self._post, payload.get("order_id"), body)
        except BaseException:
            self._queued.release()
            raise
        future.add_done_callback(lambda _: self._queued.release())
        return future

    def _post(self, order_id: Any, body: bytes) -> Delivery:
        if time.monotonic() < self._down_until:
            return Delivery(error="Siyu unreachable")
        headers = {
            "Content-Type": "application/json",
            TENANT_HEADER: self.tenant,
            SIGNATURE_HEADER: signature_of(self._secret, body),
        }
        delay, attempt = self.backoff, 0
        while True:
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as error:
                if attempt >= self.retries:
                    self._down_until = time.monotonic() + self.cool_off
                    logger.warning(
                        "shop: Siyu at %s is unreachable (%s: %s); orders fail for %gs",
                        self.base_url,
                        type(error).__name__,
                        error,
                        self.cool_off,
                    )
                    return Delivery(error=f"{type(error).__name__}: {error}")
            else:
                if response.is_success:
                    answer = _json(response)
                    return Delivery(
                        outcome=str(answer.get("outcome", "")),
                        status=response.status_code,
                        answer=answer,
                    )
                if response.status_code not in self.RETRY_STATUSES or attempt >= self.retries:
                    return self._refused(order_id, response)
            attempt += 1
            time.sleep(delay)
            delay *= 2

    def _refused(self, order_id: Any, response: httpx.Response) -> Delivery:
        answer = _json(response)
        message = str(answer.get("message") or answer.get("detail") or response.text[:200])
        log = logger.info if response.status_code in self._refusals_logged else logger.warning
        self._refusals_logged.add(response.status_code)
        log(
            "shop: Siyu refused order %s (%s): %s",
            order_id,
            response.status_code,
            message,
        )
        return Delivery(status=response.status_code, error=message, answer=answer)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _moment(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, BEIJING).isoformat()


@register_behaviour
class Shop(Behaviour):
    """The brand's shop (see the module docstring). ``connect(webhook)`` turns it on."""

    name = "shop"

    def __init__(
        self, webhook: ShopWebhook | None = None, *, rates: ShopRates | None = None
    ) -> None:
        self.webhook = webhook
        self.rates = rates or ShopRates()
        self._prefix = ""  # order ids' prefix: the seed, and which run of it
        self._identity_key = ""
        self._counter = itertools.count(1)
        self._later: dict[int, list[tuple[float, Callable[[Day], Any]]]] = {}
        self._on_the_way: list[tuple[Future[Delivery], DayReport]] = []
        self._day_closed = -1  # the day whose deliveries were settled (later ones wait)
        self._said_off = False

    def connect(self, webhook: ShopWebhook | None) -> None:
        self.webhook = webhook

    @property
    def enabled(self) -> bool:
        return self.webhook is not None

    # --- who buys ------------------------------------------------------------------------------
    def identity(self, person: Person) -> BuyerIdentity:
        """The person's phone number and unionid: a pure function of the run and the person."""
        digest = hashlib.sha256(f"siyu-shop:{self._identity_key}:{person.index}".encode()).digest()
        number = int.from_bytes(digest[:8], "big")
        phone = f"1{'3456789'[number % 7]}{number // 7 % 10**9:09d}"
        unionid = "o" + base64.urlsafe_b64encode(digest[8:32]).decode()[:27]
        return BuyerIdentity(phone=phone, unionid=unionid)

    def customer_fields(self, person: Person) -> dict[str, Any]:
        """What the emulator should know of a person becoming a WeChat user of the brand:
        the unionid the shop saw, so that Siyu can match the shop's orders to the customer."""
        if not self.enabled:
            return {}
        return {"unionid": self.identity(person).unionid}

    # --- hooks ---------------------------------------------------------------------------------
    def on_day(self, day: Day) -> None:
        if not self.enabled:
            if not self._said_off:
                self._said_off = True
                logger.info("shop: no webhook secret given, the simulated shop sends no orders")
            return
        if not self._prefix:
            self._start(day)
        day.schedule(LAST_MOMENT, self._close_day)
        for at, action in self._later.pop(day.index, []):
            day.schedule(at, action)
        rate = day.rates.repurchase or self.rates.repurchase
        if rate <= 0:
            return
        for customer in day.customers:
            probability = min(1.0, rate * customer.person.persona.factor("repurchase"))
            if day.rng.random() < probability:
                day.schedule(day.random_time(), lambda d, c=customer: self._repurchase(d, c))

    def on_purchase(self, day: Day, person: Person) -> None:
        if not self.enabled:
            return
        rng, rates = day.rng, self.rates
        channel = MINI_PROGRAM if rng.random() < rates.mini_program_share else STORE
        identity = self.identity(person)
        buyer = {"phone": identity.phone}
        if channel == MINI_PROGRAM:
            buyer["unionid"] = identity.unionid
        if rng.random() < rates.first_order_core_share:
            lines = [self._line(rng.choice(CORE), self._core_quantity(day))]
        else:
            lines = [self._line(TRIAL, 1)]
        self._place(day, buyer, lines, channel)

    # --- orders --------------------------------------------------------------------------------
    def _start(self, day: Day) -> None:
        """The first day of this run: a resumed world gets ids of its own, as the engine draws
        its resumed days from a seed of their own."""
        simulator = day.simulator
        seed = str(simulator.seed)
        if not re.fullmatch(r"[A-Za-z0-9]{1,16}", seed):
            seed = hashlib.sha256(seed.encode()).hexdigest()[:10]
        adopted = sum(1 for c in simulator.customers if c.added_on == -1)
        self._prefix = f"SIM{seed}" + (f"R{adopted}" if adopted else "")
        self._identity_key = f"{simulator.seed}:{adopted}"

    def _repurchase(self, day: Day, customer: SimulatedCustomer) -> None:
        rng, rates = day.rng, self.rates
        through_wecom = rng.random() < rates.wecom_link_share
        if rng.random() < rates.premium_share:
            first = PREMIUM
            lines = [self._line(PREMIUM, 1)]
        else:
            first = rng.choice(CORE)
            lines = [self._line(first, self._core_quantity(day))]
        if rng.random() < rates.second_line_share:
            other = rng.choice([p for p in CORE if p is not first])
            lines.append(self._line(other, 1))
        if customer.added_on == -1:  # adopted from an earlier run: only its WeCom id is known
            buyer, channel = {"external_userid": customer.external_userid}, WECOM
        else:
            identity = self.identity(customer.person)
            buyer = {"unionid": identity.unionid, "phone": identity.phone}
            channel = MINI_PROGRAM
            if through_wecom:
                buyer["external_userid"] = customer.external_userid
                channel = WECOM
        self._place(day, buyer, lines, channel)
        day.report.count("repurchases")

    def _core_quantity(self, day: Day) -> int:
        return 2 if day.rng.random() < self.rates.double_quantity_share else 1

    @staticmethod
    def _line(product: Product, quantity: int) -> dict[str, Any]:
        return {
            "sku": product.sku,
            "name": product.name,
            "quantity": quantity,
            "unit_price_fen": product.price_fen,
            "price_tier": product.price_tier,
            "category": product.category,
        }

    def _place(
        self, day: Day, buyer: dict[str, str], lines: list[dict[str, Any]], channel: str
    ) -> None:
        """Place the order now: paid a few minutes after it was placed, or left unpaid and
        cancelled once the payment window closes; perhaps refunded some days later."""
        rng, rates = day.rng, self.rates
        now = self._now(day)
        total = sum(line["quantity"] * line["unit_price_fen"] for line in lines)
        order = {
            "order_id": f"{self._prefix}-{next(self._counter):07d}",
            "status": "paid",
            "updated_at": _moment(now),
            "placed_at": _moment(now - int(rng.uniform(20, 600))),
            "paid_at": _moment(now),
            "buyer": buyer,
            "lines": lines,
            "refunds": [],
            "channel": channel,
        }
        if rng.random() < rates.unpaid:
            order.update(status="created", placed_at=_moment(now), paid_at=None)
            window = rng.uniform(900, 1800)
            self._send(day, order, "orders")
            day.schedule(day.now + window / DAY, lambda d: self._cancel(d, order, now))
            return
        self._send(day, order, "orders")
        day.report.count("revenue_fen", total)
        if rng.random() < rates.refund:
            full = rng.random() < rates.full_refund_share
            if full:
                amount, reason = total, rng.choice(FULL_REFUND_REASONS)
            elif len(lines) > 1:  # one product sent back
                line = rng.choice(lines)
                amount = line["quantity"] * line["unit_price_fen"]
                reason = rng.choice(FULL_REFUND_REASONS)
            else:
                amount = max(1, int(total * rng.choice((0.1, 0.2, 0.3))))
                reason = rng.choice(PARTIAL_REFUND_REASONS)
            after = rng.uniform(0.1, rates.refund_within_days)  # days
            refund = {"amount_fen": amount, "reason": reason, "full": amount >= total}
            self._later_at(day, day.index + day.now + after, self._refunder(order, now, refund))

    def _later_at(self, day: Day, when: float, action: Callable[[Day], Any]) -> None:
        """Play ``action`` at ``when``, in days since the first simulated day's midnight."""
        index = int(when)
        if index == day.index:
            day.schedule(when - index, action)
        else:
            self._later.setdefault(index, []).append((when - index, action))

    def _cancel(self, day: Day, order: dict[str, Any], version: int) -> None:
        now = max(self._now(day), version + 1)
        order.update(status="cancelled", updated_at=_moment(now), cancelled_at=_moment(now))
        self._send(day, order, "cancelled")

    def _refunder(
        self, order: dict[str, Any], version: int, refund: dict[str, Any]
    ) -> Callable[[Day], None]:
        def refund_order(day: Day) -> None:
            now = max(self._now(day), version + 1)
            order.update(
                status="refunded" if refund["full"] else "paid",
                updated_at=_moment(now),
                refunds=[
                    {
                        "refund_id": f"{order['order_id']}-R1",
                        "amount_fen": refund["amount_fen"],
                        "refunded_at": _moment(now),
                        "reason": refund["reason"],
                    }
                ],
            )
            self._send(day, order, "refunds")
            day.report.count("refunded_fen", refund["amount_fen"])

        return refund_order

    @staticmethod
    def _now(day: Day) -> int:
        """The action's moment: simulated during a back-fill, the real time when live."""
        timestamp = day.timestamp
        return int(time.time()) if timestamp is None else timestamp

    def _send(self, day: Day, order: dict[str, Any], counter: str) -> None:
        day.report.count(counter)
        assert self.webhook is not None
        future = self.webhook.submit(order)
        if self._day_closed == day.index:  # the day's deliveries were settled: wait for it
            self._settle(future, day.report)
        else:
            self._on_the_way.append((future, day.report))

    def _close_day(self, day: Day) -> None:
        """The day's last moment: wait for its orders, so that its report counts Siyu's
        refusals."""
        self.flush()
        self._day_closed = day.index

    def flush(self) -> None:
        """Wait for every order on its way; count the ones Siyu did not take."""
        on_the_way, self._on_the_way = self._on_the_way, []
        for future, report in on_the_way:
            self._settle(future, report)

    @staticmethod
    def _settle(future: Future[Delivery], report: DayReport) -> None:
        delivery = future.result()
        if not delivery.ok:
            report.errors += 1
            report.count("order_errors")


def shop_of(behaviours: Iterable[Behaviour]) -> Shop | None:
    """The shop among a simulator's behaviours, if it runs one."""
    return next((b for b in behaviours if isinstance(b, Shop)), None)
