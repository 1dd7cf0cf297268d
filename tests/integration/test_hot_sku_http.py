"""A hot SKU: 200 concurrent buyers against a real ``daybook api`` process never oversell it."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.inventory import InventoryItem, inventory_item_id
from tests.integration.serving import ApiProcess

ROOT = Path(__file__).resolve().parents[2]
STOCK = 1_000
BUYERS = 200
ATTEMPTS = 1_400


@pytest.fixture
def api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(database_url, redis_url, tmp_path / "api.log")
    yield process
    process.stop()


def test_200_concurrent_buyers_of_1000_units_get_exactly_1000_holds_and_the_rest_out_of_stock(
    api: ApiProcess, database_url: str, settings: Settings
) -> None:
    merchant = api.create_merchant()
    headers = {"Authorization": f"Bearer {merchant['api_key']}"}
    sku = f"HOT-{uuid.uuid4().hex[:8]}"
    received = httpx.post(
        f"{api.base_url}/v1/inventory/{sku}/receipts", json={"quantity": STOCK}, headers=headers, timeout=10
    )
    assert received.status_code == 201, received.text
    order = {
        "lines": [{"sku": sku, "quantity": 1, "unit_price": {"amount": 1999, "currency": "EUR"}}],
        "currency": "EUR",
    }

    tickets = iter(range(ATTEMPTS))
    tickets_lock = threading.Lock()
    start = threading.Barrier(BUYERS)
    answers: list[tuple[int, dict[str, Any]]] = []
    errors: list[BaseException] = []

    def buyer() -> None:
        try:
            with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as http:
                start.wait(timeout=120)  # 200 threads may take long to start on a busy machine
                while True:
                    with tickets_lock:
                        if next(tickets, None) is None:
                            return
                    response = http.post("/v1/orders", json=order)
                    answers.append((response.status_code, response.json()))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=buyer, name=f"buyer-{i}") for i in range(BUYERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "buyers still waiting after 180 s"
    assert not errors, errors[:3]

    statuses = Counter(status for status, _ in answers)
    assert sum(statuses.values()) == ATTEMPTS
    assert statuses[201] == STOCK, statuses
    assert statuses[409] == ATTEMPTS - STOCK, statuses
    held = {body["id"] for status, body in answers if status == 201}
    assert len(held) == STOCK
    refusals = [body for status, body in answers if status == 409]
    assert {body["code"] for body in refusals} == {"out_of_stock"}
    assert all(body["lines"] == [{"sku": sku, "requested": 1, "available": 0}] for body in refusals)

    # The event streams, replayed by an application that never saw the load, agree.
    replaying = Daybook(env=eventsourcing_env(database_url, settings))
    try:
        merchant_id = uuid.UUID(merchant["merchant_id"])
        level = replaying.get_inventory_level(merchant_id, sku)
        item = replaying.replay(inventory_item_id(merchant_id, sku))
    finally:
        replaying.close()
    assert (level.on_hand, level.reserved, level.available) == (STOCK, STOCK, 0)
    assert level.reserved + level.available == level.on_hand
    assert isinstance(item, InventoryItem)
    assert {str(order_id) for order_id in item.holds} == held
