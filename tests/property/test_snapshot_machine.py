"""Snapshots taken at arbitrary points never change what a load answers.

Random receipts, adjustments, orders and cancels on two SKUs, with a random snapshot
interval, snapshots taken on demand at any step, and a clock that sometimes steps back
(another writer's clock): after every step, loading each item (from its latest
snapshot and the later events) equals replaying all its events; any past version, and
any past instant, equals the replay of that prefix of its history.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.application import Daybook
from domain.commands import AdjustStock, CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.errors import DomainError
from domain.inventory import inventory_item_id
from domain.money import Money
from domain.orders import OrderLine
from tests.unit.test_snapshots import snapshot_env

SKUS = ("SKU-A", "SKU-B")
START = datetime(2032, 6, 1, tzinfo=UTC)


class SnapshotMachine(RuleBasedStateMachine):
    """One merchant, two SKUs, snapshots at any step; loads must equal full replays."""

    def __init__(self) -> None:
        super().__init__()
        self.app: Daybook | None = None
        self.merchant_id = uuid4()
        self.now = START
        self.orders: list[UUID] = []
        self.instants: list[datetime] = [START]

    @initialize(interval=st.integers(1, 9))
    def start(self, interval: int) -> None:
        self.app = Daybook(snapshot_env(interval))

    @property
    def daybook(self) -> Daybook:
        assert self.app is not None
        return self.app

    def _run(self, command: Any) -> None:
        with contextlib.suppress(DomainError):  # refused commands record nothing
            self.daybook.execute(command)
        self.instants.append(self.now)
        # Snapshots are written by a thread: waiting for it keeps every run reproducible.
        assert self.daybook.snapshotting is not None
        assert self.daybook.snapshotting.writer.flush(5.0)

    def _context(self) -> CommandContext:
        return CommandContext("system:property", "snapshots", occurred_at=self.now)

    @rule(seconds=st.integers(0, 30))
    def clock_moves_on(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(seconds=st.integers(1, 20))
    def clock_steps_back(self, seconds: int) -> None:
        self.now -= timedelta(seconds=seconds)

    @rule(sku=st.sampled_from(SKUS), quantity=st.integers(1, 20))
    def receive(self, sku: str, quantity: int) -> None:
        self._run(ReceiveStock(self._context(), self.merchant_id, sku, quantity))

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-10, 10).filter(bool))
    def adjust(self, sku: str, delta: int) -> None:
        self._run(AdjustStock(self._context(), self.merchant_id, sku, delta, "count"))

    @rule(skus=st.lists(st.sampled_from(SKUS), min_size=1, max_size=2, unique=True), quantity=st.integers(1, 6))
    def place(self, skus: list[str], quantity: int) -> None:
        order_id = UUID(int=len(self.orders) + 1)  # deterministic: draws must replay
        self.orders.append(order_id)
        lines = tuple(OrderLine(sku, quantity, Money(100, "EUR")) for sku in skus)
        self._run(PlaceOrder(self._context(), self.merchant_id, order_id, lines, "EUR"))

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self.orders))
        self._run(CancelOrder(self._context(), self.merchant_id, order_id))

    @rule(sku=st.sampled_from(SKUS))
    def snapshot_now(self, sku: str) -> None:
        snapshotting = self.daybook.snapshotting
        assert snapshotting is not None
        item_id = inventory_item_id(self.merchant_id, sku)
        if self.daybook.history(item_id):
            snapshotting.take(self.daybook.repository.get(item_id))
        assert snapshotting.writer.flush(5.0)

    @rule(sku=st.sampled_from(SKUS), data=st.data())
    def past_version_and_instant_are_exact(self, sku: str, data: st.DataObject) -> None:
        item_id = inventory_item_id(self.merchant_id, sku)
        history = self.daybook.history(item_id)
        if not history:
            return
        version = data.draw(st.integers(1, len(history)))
        assert vars(self.daybook.repository.get(item_id, version=version)) == vars(_replay(history[:version]))
        as_of = data.draw(st.sampled_from(self.instants)) + timedelta(milliseconds=data.draw(st.sampled_from([0, 1])))
        prefix = list(takewhile(lambda event: event.timestamp <= as_of, history))
        restored = self.daybook.replay(item_id, as_of=as_of)
        expected = _replay(prefix) if prefix else None
        assert (vars(restored) if restored else None) == (vars(expected) if expected else None)

    @invariant()
    def latest_load_equals_full_replay(self) -> None:
        if self.app is None:
            return
        for sku in SKUS:
            item_id = inventory_item_id(self.merchant_id, sku)
            history = self.daybook.history(item_id)
            if history:
                assert vars(self.daybook.repository.get(item_id)) == vars(_replay(history))

    def teardown(self) -> None:
        if self.app is not None:
            self.app.close()


def _replay(events: list[Any]) -> Any:
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


TestSnapshotMachine = SnapshotMachine.TestCase
TestSnapshotMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
