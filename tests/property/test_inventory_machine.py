"""Inventory under random receipts, adjustments, holds, commits, releases and expiries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from domain.application import Daybook
from domain.context import CommandContext
from domain.errors import InsufficientStockError, OutOfStockError
from domain.inventory import InventoryItem
from tests.property.domain_support import round_trip

CONTEXT = CommandContext(actor="system:property", request_id="inventory")
START = datetime(2030, 1, 1, tzinfo=UTC)


class InventoryMachine(RuleBasedStateMachine):
    """Drives one item and a simple model of it; the item must agree with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
        self.events: list[Any] = list(self.item.collect_events())
        self.on_hand = 0
        self.holds: dict[UUID, tuple[int, datetime]] = {}
        self.now = START

    def _collect(self) -> list[Any]:
        collected = list(self.item.collect_events())
        self.events.extend(collected)
        return collected

    @rule(quantity=st.integers(1, 40))
    def receive(self, quantity: int) -> None:
        self.item.receive(quantity, None, CONTEXT)
        self.on_hand += quantity
        assert len(self._collect()) == 1

    @rule(delta=st.integers(-50, 50).filter(bool))
    def adjust(self, delta: int) -> None:
        reserved = sum(quantity for quantity, _ in self.holds.values())
        if self.on_hand + delta < reserved:
            with pytest.raises(InsufficientStockError):
                self.item.adjust(delta, "count", CONTEXT)
            assert self._collect() == []
        else:
            self.item.adjust(delta, "count", CONTEXT)
            self.on_hand += delta
            assert len(self._collect()) == 1

    @rule(quantity=st.integers(1, 30), hold_seconds=st.integers(60, 3600))
    def hold(self, quantity: int, hold_seconds: int) -> None:
        order_id = UUID(int=len(self.events) + 1)  # deterministic: draws must replay
        available = self.on_hand - sum(quantity for quantity, _ in self.holds.values())
        expires_at = self.now + timedelta(seconds=hold_seconds)
        if quantity > available:
            with pytest.raises(OutOfStockError) as caught:
                self.item.hold(order_id, quantity, expires_at, CONTEXT)
            (shortage,) = caught.value.lines
            assert (shortage.requested, shortage.available) == (quantity, available)
            assert self._collect() == []
        else:
            self.item.hold(order_id, quantity, expires_at, CONTEXT)
            self.holds[order_id] = (quantity, expires_at)
            assert len(self._collect()) == 1

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(list(self.holds)))
        quantity, _ = self.holds.pop(order_id)
        assert self.item.commit(order_id, CONTEXT) is True
        self.on_hand -= quantity
        assert self.item.commit(order_id, CONTEXT) is False
        assert len(self._collect()) == 1

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(list(self.holds)))
        del self.holds[order_id]
        assert self.item.release(order_id, "cancelled", CONTEXT) is True
        assert self.item.release(order_id, "cancelled", CONTEXT) is False
        assert len(self._collect()) == 1

    @rule(seconds=st.integers(0, 1800))
    def expire_due_holds(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        due = [order_id for order_id, (_, expires_at) in self.holds.items() if expires_at <= self.now]
        for order_id in due:
            del self.holds[order_id]
            assert self.item.release(order_id, "expired", CONTEXT) is True
        assert len(self._collect()) == len(due)

    @rule()
    def commit_or_release_an_unknown_order_changes_nothing(self) -> None:
        assert self.item.commit(uuid4(), CONTEXT) is False
        assert self.item.release(uuid4(), "expired", CONTEXT) is False
        assert self._collect() == []

    @invariant()
    def stock_invariants_hold(self) -> None:
        item = self.item
        assert item.on_hand >= 0
        assert 0 <= item.reserved <= item.on_hand
        assert item.reserved == sum(hold.quantity for hold in item.holds.values())
        assert item.available == item.on_hand - item.reserved

    @invariant()
    def item_agrees_with_the_model(self) -> None:
        assert self.item.on_hand == self.on_hand
        assert {order_id: tuple(hold) for order_id, hold in self.item.holds.items()} == self.holds

    def teardown(self) -> None:
        self._collect()
        mapper = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
        assert round_trip(mapper, self.events) == self.item


InventoryMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestInventoryMachine = InventoryMachine.TestCase
