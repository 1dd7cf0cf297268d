"""Keyed receipts under load while the API is killed with ``kill -9``, again and again.

Issue 11, "Show" (item 3). Clients send receipts, each with an Idempotency-Key of its
own, and retry every request that got no answer (a dropped connection, a 5xx, a key still
locked by a run that died) with the same key until it is answered 201. However the kills
fell — after a commit and before its answer was stored, mid-batch, between batches — each
SKU's ``on_hand``, replayed from the event store, is the sum of its distinct keys'
quantities: nothing applied twice, nothing acknowledged lost.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.inventory import InventoryItem, inventory_item_id
from tests.integration.serving import ApiProcess

SKUS = [f"KILL-{index}" for index in range(4)]
CLIENTS = 32
KILLS = 3
ANSWERS_BETWEEN_KILLS = 60
RETRY_DEADLINE_S = 60.0
# A run that died keeps its key locked this long (DAYBOOK_IDEMPOTENCY_LOCK_SECONDS): the
# retries then take the key over and meet the run's idempotency marker if it committed.
LOCK_SECONDS = "1"


@dataclass
class Receipt:
    """One receipt: its key, SKU and quantity; how many sends it took."""

    key: str
    sku: str
    quantity: int
    sends: int = 0
    answered: bool = False


class Api:
    """A ``daybook api`` on a fixed port, killed and started again by the test."""

    def __init__(self, database_url: str, redis_url: str, log_path: Path) -> None:
        self.database_url, self.redis_url, self.log_path = database_url, redis_url, log_path
        self.process = ApiProcess(
            database_url, redis_url, log_path, extra_env={"DAYBOOK_IDEMPOTENCY_LOCK_SECONDS": LOCK_SECONDS}
        )
        self.port = self.process.port
        self.base_url = self.process.base_url

    def kill_and_restart(self) -> None:
        self.process.kill()
        self.process = ApiProcess(
            self.database_url,
            self.redis_url,
            self.log_path,
            port=self.port,
            extra_env={"DAYBOOK_IDEMPOTENCY_LOCK_SECONDS": LOCK_SECONDS},
        )


@pytest.fixture
def api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Api]:
    running = Api(database_url, redis_url, tmp_path / "api.log")
    yield running
    running.process.kill()


def _send_until_answered(http: httpx.Client, receipt: Receipt) -> None:
    """Sends the receipt with its key until it is answered 201 (a client that does not give up)."""
    deadline = time.monotonic() + RETRY_DEADLINE_S
    while time.monotonic() < deadline:
        receipt.sends += 1
        try:
            response = http.post(
                f"/v1/inventory/{receipt.sku}/receipts",
                json={"quantity": receipt.quantity},
                headers={"Idempotency-Key": receipt.key},
            )
        except httpx.HTTPError:
            time.sleep(0.05)  # the API is down: a client's back-off before its retry
            continue
        if response.status_code == 201:
            assert response.json()["sku"] == receipt.sku
            receipt.answered = True
            return
        # 503 (the committer stopped, the outcome unknown) or 409 idempotency_key_in_use (the
        # first run died holding the key): retry; anything else is a bug.
        assert response.status_code in (409, 503), response.text
        if response.status_code == 409:
            assert response.json()["code"] == "idempotency_key_in_use", response.text
        time.sleep(0.05)
    raise AssertionError(f"receipt {receipt.key} was never answered")


def test_keyed_receipts_retried_across_repeated_kill_9_are_each_applied_exactly_once(
    api: Api, database_url: str, settings: Settings
) -> None:
    created = api.process.create_merchant("Killed receipts")
    merchant_id = uuid.UUID(created["merchant_id"])
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    receipts: list[Receipt] = []
    answered = threading.Semaphore(0)
    stopping = threading.Event()
    failures: list[BaseException] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with httpx.Client(base_url=api.base_url, headers=headers, timeout=10) as http:
                while not stopping.is_set():
                    receipt = Receipt(uuid.uuid4().hex, rng.choice(SKUS), rng.randint(1, 9))
                    receipts.append(receipt)
                    _send_until_answered(http, receipt)
                    answered.release()
        except BaseException as error:  # reported by the test thread
            failures.append(error)

    threads = [threading.Thread(target=client, args=(seed,), name=f"client-{seed}") for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(KILLS):
            for _ in range(ANSWERS_BETWEEN_KILLS):
                assert answered.acquire(timeout=60), f"receipts stopped being answered: {failures[:1]}"
            api.kill_and_restart()
        for _ in range(ANSWERS_BETWEEN_KILLS):  # and the load goes on after the last restart
            assert answered.acquire(timeout=60), f"receipts stopped being answered: {failures[:1]}"
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=RETRY_DEADLINE_S + 10)
    assert not failures, failures[:3]
    assert all(receipt.answered for receipt in receipts)
    assert any(receipt.sends > 1 for receipt in receipts), "no kill landed on a request: the test proved nothing"

    replaying = Daybook(env=eventsourcing_env(database_url, settings))
    try:
        for sku in SKUS:
            item = replaying.replay(inventory_item_id(merchant_id, sku))
            expected = sum(receipt.quantity for receipt in receipts if receipt.sku == sku)
            assert isinstance(item, InventoryItem), sku
            assert item.on_hand == expected, f"{sku}: on hand {item.on_hand}, the keys' quantities sum to {expected}"
    finally:
        replaying.close()
