"""Running the real pieces for webhook tests: the API over HTTP, dramatiq workers, waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import redis
import uvicorn
from litestar import Litestar

from adapters.broker import make_broker, send
from adapters.gateways import parse_delivery
from domain.application import Daybook
from domain.commands import ApplyGatewayEvent, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.gateway import payment_id
from domain.money import Money
from domain.orders import OrderLine
from tests.integration.serving import free_port, wait_for
from tests.integration.webhook_senders import Delivery, PaymentStory, inbox_states

ROOT = Path(__file__).resolve().parents[2]
WORKER_READY_S = 60.0
PING_KEY_PREFIX = "daybook:ping:"  # workers.tasks.ping (importing it needs DAYBOOK_REDIS_URL)


class LiveApi:
    """The app served by uvicorn on a free loopback port, in a thread of the test process."""

    def __init__(self, app: Litestar) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-api", daemon=True)

    def start(self) -> None:
        """Serves until :meth:`stop`."""
        self.thread.start()
        wait_for(lambda: self.server.started, timeout_s=30, what="the live API to start")

    def stop(self) -> None:
        """Shuts the server down (lifespan shutdown included)."""
        self.server.should_exit = True
        self.thread.join(timeout=15)


class WorkerProcess:
    """``python -m dramatiq workers.tasks`` in a process group of its own."""

    def __init__(self, database_url: str, redis_url: str, log_path: Path) -> None:
        self.redis_url = redis_url
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DAYBOOK_DATABASE_URL": database_url,
            "DAYBOOK_REDIS_URL": redis_url,
            "DAYBOOK_LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts the worker and waits until it has processed a ping."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "workers.tasks", "--processes", "1", "--threads", "4"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        token = uuid.uuid4().hex
        broker = make_broker(self.redis_url)
        client = redis.Redis.from_url(self.redis_url)
        try:
            send(broker, "ping", token)
            wait_for(
                lambda: self._alive() and client.get(PING_KEY_PREFIX + token),
                timeout_s=WORKER_READY_S,
                what="the worker to answer a ping",
            )
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()
            broker.close()

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited early:\n{self.log_path.read_text()[-4000:]}")
        return True

    def signal(self, sig: signal.Signals) -> None:
        """Sends ``sig`` to the worker's main process and its children."""
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """``kill -9`` of every process of the worker; waits for the main one."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stops the worker (TERM, then KILL after 15 s); a stopped one is resumed first."""
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    @property
    def running(self) -> bool:
        """Whether the worker process is up."""
        return self.process is not None and self.process.poll() is None


def deliver(base_url: str, deliveries: Sequence[Delivery], *, senders: int = 16) -> list[str]:
    """Posts every delivery concurrently; returns the statuses answered, in order."""
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    with httpx.Client(base_url=base_url, timeout=30.0, limits=limits) as http, ThreadPoolExecutor(senders) as pool:
        responses = list(pool.map(lambda d: http.post(d.path, content=d.body, headers=d.headers), deliveries))
    bad = [response.text for response in responses if response.status_code != 200]
    assert not bad, bad[:5]
    return [str(response.json()["status"]) for response in responses]


def place_orders(
    base_url: str, headers: dict[str, str], skus: Sequence[str], count: int, stock_per_sku: int
) -> list[dict[str, Any]]:
    """Stocks ``skus`` and places ``count`` one-line orders over HTTP; returns the orders."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as http:
        for sku in skus:
            response = http.post(f"/v1/inventory/{sku}/receipts", json={"quantity": stock_per_sku})
            assert response.status_code == 201, response.text

        def place(index: int) -> dict[str, Any]:
            line = {"sku": skus[index % len(skus)], "quantity": 1 + index % 2, "unit_price": {"amount": 700 + index}}
            line["unit_price"]["currency"] = "EUR"
            response = http.post("/v1/orders", json={"lines": [line], "currency": "EUR"})
            assert response.status_code == 201, response.text
            order: dict[str, Any] = response.json()
            return order

        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(place, range(count)))


def expected_daybook(
    merchant_id: UUID,
    skus: Sequence[str],
    stock_per_sku: int,
    orders: Sequence[dict[str, Any]],
    stories: Sequence[PaymentStory],
) -> Daybook:
    """The same orders with each story's webhooks applied once, in order, in memory."""
    memory = Daybook(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    context = CommandContext(actor="test", request_id="expected")
    for sku in skus:
        memory.execute(ReceiveStock(context, merchant_id, sku, stock_per_sku))
    for order in orders:
        lines = [
            OrderLine(
                line["sku"], line["quantity"], Money(line["unit_price"]["amount"], line["unit_price"]["currency"])
            )
            for line in order["lines"]
        ]
        memory.execute(
            PlaceOrder(context, merchant_id, order_id=UUID(order["id"]), lines=lines, currency=order["currency"])
        )
    for story in stories:
        for delivery in story.deliveries:
            headers = {name.lower(): value for name, value in delivery.headers.items()}
            parsed = parse_delivery(story.gateway, delivery.body, headers.get("webhook-id"))
            assert isinstance(parsed, list)
            for fact in parsed:
                memory.execute(ApplyGatewayEvent(context, merchant_id, fact))
    return memory


def differences(
    base_url: str,
    headers: dict[str, str],
    memory: Daybook,
    merchant_id: UUID,
    skus: Sequence[str],
    stories: Sequence[PaymentStory],
) -> list[str]:
    """Where the served payments, orders and levels differ from ``memory``'s."""
    found: list[str] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as http:
        for story in stories:
            pid = payment_id(merchant_id, story.gateway, story.gateway_ref)
            served = http.get(f"/v1/payments/{pid}").json()
            view = memory.get_payment(merchant_id, pid)
            want = {
                "status": str(view.status),
                "order_id": str(view.order_id),
                "amount_authorized": view.amount_authorized,
                "amount_captured": view.amount_captured,
                "amount_refunded": view.amount_refunded,
                "currency": view.currency,
            }
            got = {key: served.get(key) for key in want}
            if got != want:
                found.append(f"payment {pid}: served {got}, expected {want}")
            order = memory.get_order(merchant_id, UUID(story.order_id))
            served_order = http.get(f"/v1/orders/{story.order_id}").json()
            want_order = {
                "status": str(order.status),
                "captured": order.amount_captured.amount,
                "refunded": order.amount_refunded.amount,
                "payments": sorted(map(str, order.payment_ids)),
            }
            got_order = {
                "status": served_order["status"],
                "captured": served_order["amount_captured"]["amount"],
                "refunded": served_order["amount_refunded"]["amount"],
                "payments": sorted(served_order["payment_ids"]),
            }
            if got_order != want_order:
                found.append(f"order {story.order_id}: served {got_order}, expected {want_order}")
        for sku in skus:
            level = memory.get_inventory_level(merchant_id, sku)
            served_level = http.get(f"/v1/inventory/{sku}").json()
            if (served_level["on_hand"], served_level["reserved"]) != (level.on_hand, level.reserved):
                found.append(f"level {sku}: served {served_level}, expected {level}")
    return found


def wait_until_applied(database_url: str, merchant_id: str, *, timeout_s: float = 60.0) -> dict[str, int]:
    """Waits until no inbox row of the merchant is pending and projections caught up."""
    wait_for(
        lambda: "pending" not in inbox_states(database_url, merchant_id),
        timeout_s=timeout_s,
        what="every inbox row to be processed",
    )
    wait_for(lambda: projections_caught_up(database_url), timeout_s=timeout_s, what="projections to catch up")
    return inbox_states(database_url, merchant_id)


def projections_caught_up(database_url: str) -> bool:
    """Whether every projection has reached the last stored event."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(min(notification_id), 0) FROM projection_tracking) "
            ">= (SELECT coalesce(max(notification_id), 0) FROM daybook_events)"
        ).fetchone()
    return bool(row and row[0])


def queue_drained(redis_url: str) -> bool:
    """Whether the broker holds no message of the default queue (queued, delayed or unacked)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.hlen("daybook:default.msgs")) + int(client.hlen("daybook:default.DQ.msgs")) == 0
    finally:
        client.close()
