"""Several ``daybook api`` processes, one committer per partition (``adapters/committers``).

Two real API processes on one database: orders for one hot SKU sent to both reach the
one process owning the SKU's partition (the other forwards them), so no batch meets a
version conflict; and when that owner is killed with ``kill -9`` mid-load, the other
takes its partitions over, every acknowledged order is in the event store, and none
is applied twice.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from adapters.committers.ownership import PARTITION_LOCK_NAMESPACE
from adapters.database import eventsourcing_env
from adapters.settings import Settings
from api.controllers.orders import ORDER_ID_NAMESPACE
from domain.application import Daybook
from domain.commands.routing import partition_of_id
from domain.errors import OrderNotFoundError
from domain.inventory import InventoryItem, inventory_item_id
from tests.conftest import Servers, fresh_database
from tests.integration.serving import ApiProcess, wait_for

PARTITIONS = 16
ENV = {
    "DAYBOOK_COMMITTER_PARTITIONS": str(PARTITIONS),
    # No retries of a conflicting batch: any conflict between the two would be a 503.
    "DAYBOOK_BATCH_CONFLICT_RETRIES_MAX": "0",
    "DAYBOOK_LOG_LEVEL": "INFO",
}
OWNERS = """
SELECT c.partition, c.address, c.epoch FROM committer_partitions c
  JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.classid = %s::oid AND l.objid = c.partition::oid AND l.pid = c.backend_pid
"""


@pytest.fixture
def database(servers: Servers) -> Iterator[str]:
    """A database of its own: no other test's app owns partitions in it."""
    with fresh_database(servers) as url:
        yield url


@pytest.fixture
def two_apis(database: str, redis_url: str, tmp_path: Path) -> Iterator[list[ApiProcess]]:
    apis = [ApiProcess(database, redis_url, tmp_path / f"api-{index}.log", extra_env=ENV) for index in range(2)]
    try:
        wait_for(lambda: _owners_split(database, apis), timeout_s=30, what="both processes to own partitions")
        yield apis
    finally:
        for api in apis:
            api.kill()


def _owners(database: str) -> dict[int, tuple[str, int]]:
    with psycopg.connect(database, autocommit=True) as conn:
        rows = conn.execute(OWNERS, (PARTITION_LOCK_NAMESPACE,)).fetchall()
    return {partition: (address, epoch) for partition, address, epoch in rows}


def _pid_of(address: str) -> int:
    return int(Path(address.removeprefix("unix:")).name.partition("-")[0])


def _owners_split(database: str, apis: list[ApiProcess]) -> bool:
    owners = _owners(database)
    by_pid = Counter(_pid_of(address) for address, _ in owners.values())
    return len(owners) == PARTITIONS and all(sum(by_pid[pid] for pid in api.pids()) > 0 for api in apis)


def _merchant(api: ApiProcess) -> tuple[uuid.UUID, dict[str, str]]:
    merchant = api.create_merchant("Routing")
    return uuid.UUID(merchant["merchant_id"]), {"Authorization": f"Bearer {merchant['api_key']}"}


def _receive(base_url: str, headers: dict[str, str], sku: str, quantity: int) -> None:
    response = httpx.post(f"{base_url}/v1/inventory/{sku}/receipts", json={"quantity": quantity}, headers=headers)
    assert response.status_code == 201, response.text


def _order(sku: str) -> dict[str, Any]:
    return {"lines": [{"sku": sku, "quantity": 1, "unit_price": {"amount": 100, "currency": "EUR"}}], "currency": "EUR"}


def _routed(api: ApiProcess, route: str) -> float:
    text = httpx.get(f"{api.base_url}/metrics", timeout=10).text
    prefix = f'daybook_commands_routed_total{{route="{route}"}} '
    return sum(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))


def _daybook(database: str) -> Daybook:
    return Daybook(env=eventsourcing_env(database, Settings()))


def test_orders_for_one_hot_sku_sent_to_two_processes_never_conflict_nor_oversell(
    two_apis: list[ApiProcess], database: str
) -> None:
    merchant_id, headers = _merchant(two_apis[0])
    sku, stock, orders = "HOT-ROUTED", 300, 400
    _receive(two_apis[1].base_url, headers, sku, stock)
    answers: Counter[int] = Counter()
    placed: list[str] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        api = two_apis[index % 2]
        response = httpx.post(f"{api.base_url}/v1/orders", json=_order(sku), headers=headers, timeout=30)
        with lock:
            answers[response.status_code] += 1
            if response.status_code == 201:
                placed.append(response.json()["id"])
            else:
                assert response.status_code == 409, response.text
                assert response.json()["code"] == "out_of_stock"

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(send, range(orders)))

    assert answers == {201: stock, 409: orders - stock}
    # Half the orders reached the process that does not own the SKU: it forwarded them.
    assert sum(_routed(api, "forwarded") for api in two_apis) > 0
    daybook = _daybook(database)
    try:
        item = daybook.repository.get(inventory_item_id(merchant_id, sku))
        assert isinstance(item, InventoryItem)
        assert item.reserved == stock == len(set(placed))
        for order_id in placed:
            assert daybook.get_order(merchant_id, uuid.UUID(order_id)).status == "reserved"
    finally:
        daybook.close()


def test_killing_the_owner_mid_load_hands_its_partitions_over_and_loses_no_acknowledged_order(
    two_apis: list[ApiProcess], database: str
) -> None:
    merchant_id, headers = _merchant(two_apis[0])
    sku = "HOT-TAKEOVER"
    _receive(two_apis[0].base_url, headers, sku, 1_000_000)
    partition = partition_of_id(inventory_item_id(merchant_id, sku), PARTITIONS)
    owner_pid = _pid_of(_owners(database)[partition][0])
    owner = next(api for api in two_apis if owner_pid in api.pids())
    survivor = next(api for api in two_apis if api is not owner)
    survivor_pids = survivor.pids()

    keys: list[str] = []
    acknowledged: set[str] = set()
    survivor_failures: list[str] = []
    stop = threading.Event()
    killed = threading.Event()
    lock = threading.Lock()

    def client(number: int) -> None:
        with httpx.Client(timeout=30) as http:
            sent = 0
            while not stop.is_set():
                key = f"takeover-{number}-{sent}"
                sent += 1
                api = survivor if killed.is_set() or sent % 2 else owner
                with lock:
                    keys.append(key)
                try:
                    response = http.post(
                        f"{api.base_url}/v1/orders", json=_order(sku), headers={**headers, "Idempotency-Key": key}
                    )
                except httpx.HTTPError:
                    continue  # the killed process: unanswered, so maybe placed, maybe not
                with lock:
                    if response.status_code == 201:
                        acknowledged.add(key)
                    elif api is survivor:
                        survivor_failures.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=client, args=(number,)) for number in range(16)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(acknowledged) >= 200, timeout_s=60, what="orders before the kill")
        owner.kill()
        killed.set()
        at_kill = len(acknowledged)

        def survivor_owns() -> bool:
            owner = _owners(database).get(partition)  # read once: the directory moves between reads
            return owner is not None and _pid_of(owner[0]) in survivor_pids

        wait_for(survivor_owns, timeout_s=15, what="the survivor to own the hot SKU's partition")
        wait_for(lambda: len(acknowledged) >= at_kill + 200, timeout_s=60, what="orders after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    assert survivor_failures == []
    daybook = _daybook(database)
    try:
        item = daybook.repository.get(inventory_item_id(merchant_id, sku))
        assert isinstance(item, InventoryItem)
        placed = set()
        for key in keys:
            order_id = uuid.uuid5(ORDER_ID_NAMESPACE, f"{merchant_id}:{key}")
            try:
                daybook.get_order(merchant_id, order_id)
            except OrderNotFoundError:
                continue
            placed.add(key)
        assert acknowledged <= placed
        # Each order holds one unit once: nothing was applied twice.
        assert item.reserved == len(placed)
    finally:
        daybook.close()
