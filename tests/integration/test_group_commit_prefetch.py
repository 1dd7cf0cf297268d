"""The group committer loads what a batch needs in one query, on real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import wait
from typing import Any

import pytest

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import ApplyGatewayEvent, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import OrderLine
from domain.unit_of_work import UnitOfWork

CONTEXT = CommandContext(actor="test", request_id="prefetch")
DEADLINE_S = 20.0


class Gate:
    """Holds the committer's worker so that the commands submitted meanwhile form one batch."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, uow: UnitOfWork) -> None:
        self.entered.set()
        assert self.released.wait(DEADLINE_S)


class Reads:
    """Counts the event store reads of one application (wraps its recorder's methods)."""

    def __init__(self, app: Daybook) -> None:
        self.single = 0
        self.bulk = 0
        recorder: Any = app.recorder
        select_events, select_events_of = recorder.select_events, recorder.select_events_of

        def counted_single(*args: Any, **kwargs: Any) -> Any:
            self.single += 1
            return select_events(*args, **kwargs)

        def counted_bulk(*args: Any, **kwargs: Any) -> Any:
            self.bulk += 1
            return select_events_of(*args, **kwargs)

        recorder.select_events, recorder.select_events_of = counted_single, counted_bulk


@pytest.fixture
def apps(database_url: str, settings: Settings) -> Iterator[tuple[Daybook, Daybook]]:
    writer = Daybook(env=eventsourcing_env(database_url, settings))
    cold = Daybook(env=eventsourcing_env(database_url, settings))
    yield writer, cold
    writer.close()
    cold.close()


def _one_batch(committer: GroupCommitter, commands: list[Any]) -> list[Any]:
    gate = Gate()
    gate_future = committer.submit(gate)
    assert gate.entered.wait(DEADLINE_S)
    futures = [committer.submit(command) for command in commands]
    gate.released.set()
    wait([gate_future, *futures], timeout=DEADLINE_S)
    return [future.result().value for future in futures]


def test_a_batch_of_orders_on_skus_the_committer_never_saw_reads_them_in_one_query(
    apps: tuple[Daybook, Daybook],
) -> None:
    writer, cold = apps
    merchant_id = uuid.uuid4()
    skus = [f"P-{index:03d}" for index in range(50)]
    for sku in skus:
        writer.execute(ReceiveStock(CONTEXT, merchant_id, sku, 5))
    reads = Reads(cold)
    orders = [
        PlaceOrder(CONTEXT, merchant_id, uuid.uuid4(), (OrderLine(sku, 2, Money(100, "EUR")),), "EUR") for sku in skus
    ]
    with GroupCommitter(cold, batch_size_max=500, batch_wait_ms=50) as committer:
        views = _one_batch(committer, orders)
    assert [view.status for view in views] == ["reserved"] * 50
    assert reads.bulk >= 1
    assert reads.single == 0
    for sku in skus:
        level = writer.get_inventory_level(merchant_id, sku)
        assert (level.on_hand, level.reserved) == (5, 2)


def test_payments_not_yet_in_the_store_are_known_missing_without_a_read_each(
    apps: tuple[Daybook, Daybook],
) -> None:
    _, cold = apps
    merchant_id = uuid.uuid4()
    facts = [
        ApplyGatewayEvent(
            CONTEXT,
            merchant_id,
            GatewayEvent(GatewayEventKind.AUTHORIZED, "stripe", f"pi_{index}", f"evt_{index}", None, 100, "EUR"),
        )
        for index in range(30)
    ]
    reads = Reads(cold)
    with GroupCommitter(cold, batch_size_max=500, batch_wait_ms=50) as committer:
        outcomes = _one_batch(committer, facts)
    assert all(outcome.changed for outcome in outcomes)
    assert reads.single == 0
    assert reads.bulk >= 1
