"""``kill -9`` of a real ``daybook api`` under load: nothing acknowledged is lost, nothing half-done.

Every order is placed with an Idempotency-Key, so its id is known before the answer is
(``uuid5`` of merchant and key): after the crash, the event streams replayed by a fresh
application must show, for every attempt, either an order AND its hold or neither.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from api.controllers.orders import ORDER_ID_NAMESPACE
from domain.application import Daybook
from domain.inventory import InventoryItem, inventory_item_id
from domain.orders import Order
from tests.integration.serving import ApiProcess

ROOT = Path(__file__).resolve().parents[2]
BUYERS = 24
ACKNOWLEDGED_BEFORE_KILL = 200


@dataclass
class Attempt:
    """One order request: its key, what it asked for and, if it came, the answer."""

    key: str
    quantity: int
    status: int | None = None
    order_id: str | None = None


@pytest.fixture
def api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(database_url, redis_url, tmp_path / "api.log")
    yield process
    process.kill()


def test_kill_9_under_load_loses_no_acknowledged_order_and_leaves_no_hold_without_its_order(
    api: ApiProcess, database_url: str, settings: Settings
) -> None:
    created = api.create_merchant("Crash merchant")
    merchant_id = uuid.UUID(created["merchant_id"])
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    sku = f"CRASH-{uuid.uuid4().hex[:8]}"
    stock = 1_000_000
    received = httpx.post(
        f"{api.base_url}/v1/inventory/{sku}/receipts", json={"quantity": stock}, headers=headers, timeout=10
    )
    assert received.status_code == 201, received.text

    attempts: list[Attempt] = []
    acknowledged = threading.Semaphore(0)
    stopped = threading.Event()
    unexpected: list[str] = []

    def buyer(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=10) as http:
            while not stopped.is_set():
                attempt = Attempt(key=uuid.uuid4().hex, quantity=rng.randint(1, 3))
                attempts.append(attempt)
                body = {
                    "lines": [
                        {"sku": sku, "quantity": attempt.quantity, "unit_price": {"amount": 100, "currency": "EUR"}}
                    ],
                    "currency": "EUR",
                }
                try:
                    response = http.post("/v1/orders", json=body, headers={"Idempotency-Key": attempt.key})
                except httpx.HTTPError:
                    return  # the server died with this request unanswered
                attempt.status = response.status_code
                if response.status_code == 201:
                    attempt.order_id = response.json()["id"]
                    acknowledged.release()
                else:
                    unexpected.append(response.text)

    threads = [threading.Thread(target=buyer, args=(i,), name=f"buyer-{i}") for i in range(BUYERS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(ACKNOWLEDGED_BEFORE_KILL):
            assert acknowledged.acquire(timeout=30), "orders stopped being acknowledged"
        api.kill()
    finally:
        stopped.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not unexpected, unexpected[:3]
    answered = [a for a in attempts if a.status == 201]
    unanswered = [a for a in attempts if a.status is None]
    assert len(answered) >= ACKNOWLEDGED_BEFORE_KILL
    assert unanswered, "the kill did not land mid-load"

    # The truth is the event store, replayed by an application that never saw the load.
    replaying = Daybook(env=eventsourcing_env(database_url, settings))
    try:
        item = replaying.replay(inventory_item_id(merchant_id, sku))
        assert isinstance(item, InventoryItem)
        ids = {a.key: uuid.uuid5(ORDER_ID_NAMESPACE, f"{merchant_id}:{a.key}") for a in attempts}
        orders = {key: replaying.replay(order_id) for key, order_id in ids.items()}
    finally:
        replaying.close()

    for attempt in answered:
        assert str(ids[attempt.key]) == attempt.order_id
        order = orders[attempt.key]
        assert isinstance(order, Order), f"acknowledged order {attempt.order_id} was lost"
        assert order.merchant_id == merchant_id
        assert str(order.status) == "reserved"
        assert item.holds[ids[attempt.key]].quantity == attempt.quantity
    for attempt in attempts:
        order = orders[attempt.key]
        held = item.holds.get(ids[attempt.key])
        # Atomicity: an order and its hold exist together or not at all.
        assert (order is None) == (held is None), f"order {ids[attempt.key]}: {order!r} with hold {held!r}"
        if held is not None:
            assert held.quantity == attempt.quantity
    assert set(item.holds) <= set(ids.values()), "a hold exists for an order nobody asked for"
    assert item.reserved == sum(hold.quantity for hold in item.holds.values())
    existing = [a for a in attempts if orders[a.key] is not None]
    assert item.reserved == sum(a.quantity for a in existing)
    assert item.on_hand == stock
    assert item.reserved + item.available == item.on_hand
