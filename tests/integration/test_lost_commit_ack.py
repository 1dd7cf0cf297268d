"""A lost COMMIT acknowledgement is not a version conflict (issue 11, item 4).

The event-store library retries an insert after a dropped connection. When the first
attempt had committed, the retry meets the unique (stream, version) key; read as a
version conflict, that re-ran the group committer's batch: a receipt applied twice, a
placed order answered ``order_already_exists``. A proxy between the application and
PostgreSQL drops the connection right after the server confirms COMMIT.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.inventory import InventoryItem, inventory_item_id
from domain.money import Money
from domain.orders import Order, OrderLine, OrderStatus
from tests.integration.pg_proxy import CommitDroppingProxy

CONTEXT = CommandContext(actor="test", request_id="lost-ack")


@dataclass
class Proxied:
    proxy: CommitDroppingProxy
    committer: GroupCommitter
    truth: Daybook  # straight to PostgreSQL, for replays


@pytest.fixture
def proxied(database_url: str, settings: Settings) -> Iterator[Proxied]:
    proxy = CommitDroppingProxy(database_url)
    env: dict[str, Any] = {
        **eventsourcing_env(database_url, settings),
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(proxy.port),
    }
    app = Daybook(env=env)
    truth = Daybook(env=eventsourcing_env(database_url, settings))
    committer = GroupCommitter(app, name="lost-ack")
    committer.start()
    yield Proxied(proxy, committer, truth)
    committer.stop()
    app.close()
    truth.close()
    proxy.close()


def test_a_receipt_whose_commit_acknowledgement_was_lost_is_applied_once(proxied: Proxied) -> None:
    merchant, sku = uuid.uuid4(), "LOST-ACK"
    proxied.committer.submit(ReceiveStock(CONTEXT, merchant, sku, 3)).result(timeout=30)
    proxied.proxy.arm()
    outcome = proxied.committer.submit(ReceiveStock(CONTEXT, merchant, sku, 5)).result(timeout=30)
    assert proxied.proxy.dropped.is_set(), "the proxy never dropped a COMMIT"
    assert outcome.value.on_hand == 8
    assert outcome.position is not None
    item = proxied.truth.replay(inventory_item_id(merchant, sku))
    assert isinstance(item, InventoryItem)
    assert item.on_hand == 8
    received = [event for event in proxied.truth.history(item.id) if type(event).__name__ == "StockReceived"]
    assert [event.quantity for event in received] == [3, 5]  # type: ignore[attr-defined]
    last = proxied.truth.recorder.select_notifications(start=outcome.position, limit=1)
    assert last[0].originator_id == item.id


def test_an_order_placed_while_its_commit_acknowledgement_was_lost_is_answered_as_placed(proxied: Proxied) -> None:
    merchant, sku, order_id = uuid.uuid4(), "LOST-ACK-ORDER", uuid.uuid4()
    proxied.committer.submit(ReceiveStock(CONTEXT, merchant, sku, 10)).result(timeout=30)
    lines = [OrderLine(sku, 4, Money(250, "EUR"))]
    proxied.proxy.arm()
    placed = proxied.committer.submit(PlaceOrder(CONTEXT, merchant, order_id, lines, "EUR")).result(timeout=30)
    assert proxied.proxy.dropped.is_set(), "the proxy never dropped a COMMIT"
    assert placed.value.status is OrderStatus.RESERVED
    order = proxied.truth.replay(order_id)
    assert isinstance(order, Order)
    assert order.version == 1
    item = proxied.truth.replay(inventory_item_id(merchant, sku))
    assert isinstance(item, InventoryItem)
    assert (item.on_hand, item.reserved) == (10, 4)
    # The committer's cache is right too: the next command sees the committed hold once.
    after = proxied.committer.submit(ReceiveStock(CONTEXT, merchant, sku, 1)).result(timeout=30)
    assert (after.value.on_hand, after.value.reserved) == (11, 4)
