"""The Black Friday traffic: merchants stocking, shoppers ordering and cancelling, a gateway paying.

Everything a client was told is kept in :class:`Evidence`, for the checks at the end
(``bench/bf_checks.py``). Clients behave as careful ones do: every command carries an
``Idempotency-Key`` and is sent again with the same key until it gets an answer that is
not a dropped connection, a 5xx, a 429 or ``idempotency_key_in_use``; a gateway re-sends
every delivery until it is answered 200. All traffic goes to loopback.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integration.webhook_senders import VARIANTS, Delivery, PaymentStory

RETRY_DEADLINE_S = 180.0
"""How long a client keeps re-sending one request (the deployment is restarted meanwhile)."""
RETRY_PAUSE_S = (0.05, 0.5)
HOT_SKUS_PER_MERCHANT = 2
COLD_SKUS_PER_MERCHANT = 100
CANCEL_SHARE, PAY_SHARE, READ_SHARE = 0.25, 0.45, 0.3
DUPLICATE_SHARE, REORDER_SHARE = 0.25, 0.3
SHORT_HOLD_SHARE = 0.2


@dataclass
class Merchant:
    """A merchant created through the admin endpoint, and the SKUs it sells."""

    created: dict[str, Any]
    hot_skus: list[str]
    cold_skus: list[str]

    @property
    def merchant_id(self) -> str:
        return str(self.created["merchant_id"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.created['api_key']}"}


@dataclass
class OrderRecord:
    """An order the API acknowledged (201), and every status a client was shown for it."""

    order_id: str
    merchant_id: str
    key: str
    lines: list[tuple[str, int]]
    total: int
    position: int
    seen: list[str] = field(default_factory=lambda: ["reserved"])


@dataclass
class StockRequest:
    """A keyed receipt or adjustment and its final answer (``None``: never answered)."""

    merchant_id: str
    sku: str
    delta: int
    key: str
    status: int | None = None


@dataclass
class Story:
    """A payment the gateway simulator reported, and every answer each of its deliveries got."""

    story: PaymentStory
    merchant_id: str
    variant: int
    answers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unanswered: set[str] = field(default_factory=set)

    @property
    def expected_refunded(self) -> int:
        """Each distinct refund id counted once (variant 0 refunds A and B, the others A)."""
        refunds = self.story.refund_a[1] + (self.story.refund_b[1] if self.variant == 0 else 0)
        return min(refunds, self.story.total)


@dataclass
class Endpoint:
    """What one endpoint answered: latencies of answers, counts by status, requests without an answer."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    no_answer: int = 0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] * 1000


@dataclass
class Evidence:
    """Everything the clients were told, for the checks."""

    merchants: list[Merchant] = field(default_factory=list)
    orders: dict[str, OrderRecord] = field(default_factory=dict)
    unresolved_orders: list[tuple[str, str]] = field(default_factory=list)
    out_of_stock: int = 0
    stock: list[StockRequest] = field(default_factory=list)
    stories: list[Story] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    endpoints: dict[str, Endpoint] = field(default_factory=lambda: defaultdict(Endpoint))


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""


def _retryable(response: httpx.Response) -> bool:
    if response.status_code >= 500 or response.status_code == 429:
        return True
    return response.status_code == 409 and _code(response) == "idempotency_key_in_use"


class Traffic:
    """The clients of one run, sharing one HTTP connection pool to the API."""

    def __init__(self, base_url: str, evidence: Evidence, seed: int) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(10.0, connect=2.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
        )
        self.evidence = evidence
        self.rng = random.Random(seed)
        self.stopping = asyncio.Event()
        self.shoppers_done = asyncio.Event()
        """Set once no shopper can hand the gateway another payment."""
        self.deliveries: list[tuple[float, int, Story, Delivery]] = []
        self._sequence = 0
        self.deliveries_in_flight = 0

    async def close(self) -> None:
        await self.http.aclose()

    # --- one request, and one request until it is answered ---------------------------

    async def send(self, label: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """One request; its latency and status are counted under ``label``; ``None`` without an answer."""
        endpoint = self.evidence.endpoints[label]
        started = time.perf_counter()
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError:
            endpoint.no_answer += 1
            return None
        endpoint.latencies_s.append(time.perf_counter() - started)
        endpoint.statuses[response.status_code] += 1
        return response

    async def until_answered(self, label: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """Sends again (same key, same body) until a final answer; ``None`` past the deadline."""
        deadline = time.monotonic() + RETRY_DEADLINE_S
        while time.monotonic() < deadline:
            response = await self.send(label, method, url, **kwargs)
            if response is not None and not _retryable(response):
                return response
            await asyncio.sleep(self.rng.uniform(*RETRY_PAUSE_S))
        return None

    def _unexpected(self, what: str, response: httpx.Response) -> None:
        self.evidence.unexpected.append(f"{what}: {response.status_code} {response.text[:200]}")

    # --- merchants -----------------------------------------------------------------------

    async def stock(self, merchant: Merchant, sku: str, delta: int) -> StockRequest:
        """A keyed receipt (delta > 0) or adjustment (delta < 0), sent until answered."""
        request = StockRequest(merchant.merchant_id, sku, delta, f"stock-{uuid.uuid4().hex}")
        self.evidence.stock.append(request)
        if delta > 0:
            label, path, body = "POST receipts", f"/v1/inventory/{sku}/receipts", {"quantity": delta}
        else:
            label, path = "POST adjustments", f"/v1/inventory/{sku}/adjustments"
            body = {"delta": delta, "reason": "damaged in the warehouse"}
        headers = {**merchant.headers, "Idempotency-Key": request.key}
        response = await self.until_answered(label, "POST", path, json=body, headers=headers)
        if response is None:
            return request
        request.status = response.status_code
        if response.status_code != 201 and not (delta < 0 and _code(response) == "insufficient_stock"):
            self._unexpected(label, response)
        return request

    async def merchant(self, merchant: Merchant, rng: random.Random) -> None:
        """Restocks hot SKUs a little every second (so they sell out), cold ones now and then."""
        while not self.stopping.is_set():
            for sku in merchant.hot_skus:
                await self.stock(merchant, sku, rng.randint(5, 15))
            await self.stock(merchant, rng.choice(merchant.cold_skus), rng.randint(1, 5))
            if rng.random() < 0.3:
                await self.stock(merchant, rng.choice(merchant.cold_skus), -1)
            await asyncio.sleep(rng.uniform(0.6, 1.2))

    # --- shoppers ------------------------------------------------------------------------

    def _lines(self, merchant: Merchant, rng: random.Random) -> list[tuple[str, int]]:
        skus: dict[str, int] = {}
        for _ in range(1 if rng.random() < 0.7 else 2):
            if rng.random() < 0.5:
                sku = rng.choice(merchant.hot_skus)
            else:  # a long tail: the first cold SKUs sell more often than the last
                sku = merchant.cold_skus[min(len(merchant.cold_skus) - 1, int(rng.paretovariate(1.2)) - 1)]
            skus[sku] = rng.randint(1, 3)
        return list(skus.items())

    async def shopper(self, rng: random.Random) -> None:
        """Places orders; cancels some, has the gateway pay others, reads some back."""
        while not self.stopping.is_set():
            merchant = rng.choice(self.evidence.merchants)
            lines = self._lines(merchant, rng)
            prices = {sku: rng.randint(100, 5000) for sku, _ in lines}
            body: dict[str, Any] = {
                "lines": [
                    {"sku": sku, "quantity": quantity, "unit_price": {"amount": prices[sku], "currency": "EUR"}}
                    for sku, quantity in lines
                ],
                "currency": "EUR",
                "customer_ref": f"shopper-{rng.randint(1, 10_000)}",
                "hold_seconds": 60 if rng.random() < SHORT_HOLD_SHARE else 900,
            }
            key = f"order-{uuid.uuid4().hex}"
            headers = {**merchant.headers, "Idempotency-Key": key}
            response = await self.until_answered("POST orders", "POST", "/v1/orders", json=body, headers=headers)
            if response is None:
                self.evidence.unresolved_orders.append((merchant.merchant_id, key))
                continue
            if response.status_code == 409 and _code(response) == "out_of_stock":
                self.evidence.out_of_stock += 1
                continue
            if response.status_code != 201:
                self._unexpected("POST orders", response)
                continue
            placed = response.json()
            record = OrderRecord(
                placed["id"], merchant.merchant_id, key, lines,
                sum(prices[sku] * quantity for sku, quantity in lines),
                int(response.headers.get("X-Daybook-Position", "0")),
            )  # fmt: skip
            self.evidence.orders[record.order_id] = record
            choice = rng.random()
            if choice < CANCEL_SHARE:
                await self.cancel(merchant, record)
            elif choice < CANCEL_SHARE + PAY_SHARE:
                self.pay(merchant, record, rng)
            if rng.random() < READ_SHARE:
                await self.read(merchant, record)

    async def cancel(self, merchant: Merchant, record: OrderRecord) -> None:
        headers = {**merchant.headers, "Idempotency-Key": f"cancel-{record.key}"}
        response = await self.until_answered("POST cancel", "POST", f"/v1/orders/{record.order_id}/cancel",
                                             headers=headers)  # fmt: skip
        if response is None:
            return
        if response.status_code == 200:
            record.seen.append(response.json()["status"])
        elif not (response.status_code == 409 and _code(response) == "invalid_state"):
            self._unexpected("POST cancel", response)

    async def read(self, merchant: Merchant, record: OrderRecord) -> None:
        """Reads the order back at (at least) the position its answer named."""
        headers = {**merchant.headers, "X-Daybook-Min-Position": str(record.position)}
        response = await self.send("GET order", "GET", f"/v1/orders/{record.order_id}", headers=headers)
        if response is None or response.status_code == 503:
            return
        if response.status_code == 200:
            record.seen.append(response.json()["status"])
        else:
            self._unexpected("GET order", response)

    # --- the gateway ---------------------------------------------------------------------

    def pay(self, merchant: Merchant, record: OrderRecord, rng: random.Random) -> None:
        """Schedules a payment's deliveries: delayed, some reordered, some sent twice."""
        gateway = "stripe" if rng.random() < 0.5 else "standard"
        index = len(self.evidence.stories)
        story = Story(
            PaymentStory(merchant.created, gateway, record.order_id, record.total, index),
            merchant.merchant_id,
            index % VARIANTS,
        )
        self.evidence.stories.append(story)
        deliveries = list(story.story.deliveries)
        if rng.random() < REORDER_SHARE:
            rng.shuffle(deliveries)
        due = time.monotonic() + rng.uniform(0.05, 1.0)
        for delivery in deliveries:
            due += rng.uniform(0.02, 0.4)
            self._schedule(due, story, delivery)
            if rng.random() < DUPLICATE_SHARE:
                self._schedule(due + rng.uniform(0.1, 3.0), story, delivery)

    def _schedule(self, due: float, story: Story, delivery: Delivery) -> None:
        self._sequence += 1
        story.unanswered.add(delivery.event_id)
        heapq.heappush(self.deliveries, (due, self._sequence, story, delivery))

    @property
    def deliveries_pending(self) -> int:
        return len(self.deliveries) + self.deliveries_in_flight

    async def gateway_sender(self) -> None:
        """Sends due deliveries until the shoppers are done and none is left."""
        while not (self.shoppers_done.is_set() and not self.deliveries_pending):
            if not self.deliveries or self.deliveries[0][0] > time.monotonic():
                await asyncio.sleep(0.02)
                continue
            _, _, story, delivery = heapq.heappop(self.deliveries)
            self.deliveries_in_flight += 1
            try:
                await self._deliver(story, delivery)
            finally:
                self.deliveries_in_flight -= 1

    async def _deliver(self, story: Story, delivery: Delivery) -> None:
        label = f"POST webhook {story.story.gateway}"
        response = await self.until_answered(label, "POST", delivery.path, content=delivery.body,
                                             headers=delivery.headers)  # fmt: skip
        if response is None:
            return
        if response.status_code == 200:
            story.answers[delivery.event_id].append(str(response.json()["status"]))
            story.unanswered.discard(delivery.event_id)
        else:
            self._unexpected(label, response)
