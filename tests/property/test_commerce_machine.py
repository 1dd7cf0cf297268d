"""Orders, stock and payments together: never oversell; replay equals live state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.application import Daybook
from domain.commands import (
    AdjustStock,
    ApplyGatewayEvent,
    CancelOrder,
    ExpireOrder,
    PlaceOrder,
    ReceiveStock,
)
from domain.context import CommandContext
from domain.errors import DomainError, InvalidStateError, OutOfStockError
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.inventory import InventoryItem
from domain.money import Money
from domain.orders import Order, OrderLine, OrderStatus, quantities_by_sku
from tests.property.domain_support import CachingRunner

CONTEXT = CommandContext(actor="system:property", request_id="commerce")
SKUS = ["A", "B", "C"]
START = datetime(2030, 1, 1, tzinfo=UTC)
COMMITTED_STATUSES = {
    OrderStatus.PAID,
    OrderStatus.PARTIALLY_REFUNDED,
    OrderStatus.REFUNDED,
    OrderStatus.DISPUTED,
}

order_lines = st.lists(
    st.tuples(st.sampled_from(SKUS), st.integers(1, 4), st.sampled_from([100, 250])),
    min_size=1,
    max_size=3,
)


class CommerceMachine(RuleBasedStateMachine):
    """One merchant; random stock movements, orders and gateway facts."""

    def __init__(self) -> None:
        super().__init__()
        self.app = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.runner = CachingRunner(self.app)
        self.merchant_id = uuid4()
        self.stock_in = dict.fromkeys(SKUS, 0)
        self.orders: list[UUID] = []
        self.placed = 0
        self.now = START

    def _order(self, index: int) -> Order:
        order = self.runner.live[self.orders[index % len(self.orders)]]
        assert isinstance(order, Order)
        return order

    def _items(self) -> dict[str, InventoryItem]:
        items = {}
        for aggregate in self.runner.live.values():
            if isinstance(aggregate, InventoryItem):
                items[aggregate.sku] = aggregate
        return items

    def _fact(self, kind: GatewayEventKind, order_id: UUID | None, amount: int, ref: str, **extra: str) -> None:
        event_id = f"evt_{uuid4().hex}"
        fact = GatewayEvent(
            kind,
            "stripe",
            ref,
            event_id,
            order_id,
            amount,
            extra.get("currency", "EUR"),
            extra.get("refund_id"),
        )
        self.runner.run(ApplyGatewayEvent(CONTEXT, self.merchant_id, fact, now=self.now))

    @initialize(quantities=st.lists(st.integers(0, 12), min_size=len(SKUS), max_size=len(SKUS)))
    def initial_stock(self, quantities: list[int]) -> None:
        for sku, quantity in zip(SKUS, quantities, strict=True):
            if quantity:
                self.receive(sku, quantity)

    @rule(sku=st.sampled_from(SKUS), quantity=st.integers(1, 6))
    def receive(self, sku: str, quantity: int) -> None:
        self.runner.run(ReceiveStock(CONTEXT, self.merchant_id, sku, quantity))
        self.stock_in[sku] += quantity

    @rule(sku=st.sampled_from(SKUS), delta=st.sampled_from([-3, -2, -1, 1, 2, 3]))
    def adjust(self, sku: str, delta: int) -> None:
        try:
            self.runner.run(AdjustStock(CONTEXT, self.merchant_id, sku, delta, "count"))
        except DomainError:
            return
        self.stock_in[sku] += delta

    @rule(lines=order_lines, hold_seconds=st.integers(60, 900))
    def place(self, lines: list[tuple[str, int, int]], hold_seconds: int) -> None:
        self.placed += 1
        order_id = UUID(int=self.placed)  # deterministic, so that failures replay alike
        items = tuple(OrderLine(sku, quantity, Money(price, "EUR")) for sku, quantity, price in lines)
        command = PlaceOrder(CONTEXT, self.merchant_id, order_id, items, "EUR", None, hold_seconds, self.now)
        try:
            self.runner.run(command)
        except OutOfStockError:
            assert order_id not in self.runner.live
            return
        self.orders.append(order_id)

    @precondition(lambda self: bool(self.orders))
    @rule(index=st.integers(0, 50))
    def cancel(self, index: int) -> None:
        order = self._order(index)
        try:
            self.runner.run(CancelOrder(CONTEXT, self.merchant_id, order.id))
        except InvalidStateError:
            assert order.status not in {OrderStatus.RESERVED, OrderStatus.CANCELLED}

    @precondition(lambda self: bool(self.orders))
    @rule(index=st.integers(0, 50), seconds=st.integers(0, 1200))
    def expire(self, index: int, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        order = self._order(index)
        self.runner.run(ExpireOrder(CONTEXT, self.merchant_id, order.id, self.now))

    @precondition(lambda self: bool(self.orders))
    @rule(
        index=st.integers(0, 50),
        share=st.sampled_from([50, 100, 100, 150]),
        ref=st.sampled_from(["0", "1"]),
    )
    def capture(self, index: int, share: int, ref: str) -> None:
        order = self._order(index)
        self._fact(
            GatewayEventKind.CAPTURED,
            order.id,
            order.total.amount * share // 100,
            f"pi_{order.id}_{ref}",
        )

    @precondition(lambda self: any(self._lapsed()))
    @rule(data=st.data())
    def capture_a_lapsed_order(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(self._lapsed()))
        order = self._order(index)
        self._fact(GatewayEventKind.CAPTURED, order.id, order.total.amount, f"pi_{order.id}_0")

    def _lapsed(self) -> list[int]:
        lapsed = {OrderStatus.EXPIRED, OrderStatus.CANCELLED}
        return [index for index in range(len(self.orders)) if self._order(index).status in lapsed]

    @precondition(lambda self: bool(self.orders))
    @rule(
        index=st.integers(0, 50),
        share=st.sampled_from([10, 50, 100, 200]),
        refund_id=st.sampled_from(["re_1", "re_2"]),
    )
    def refund(self, index: int, share: int, refund_id: str) -> None:
        order = self._order(index)
        amount = max(1, order.total.amount * share // 100)
        self._fact(GatewayEventKind.REFUNDED, order.id, amount, f"pi_{order.id}_0", refund_id=refund_id)

    @precondition(lambda self: bool(self.orders))
    @rule(index=st.integers(0, 50))
    def dispute(self, index: int) -> None:
        order = self._order(index)
        self._fact(GatewayEventKind.DISPUTED, order.id, order.total.amount, f"pi_{order.id}_0")

    @precondition(lambda self: bool(self.orders))
    @rule(index=st.integers(0, 50))
    def capture_in_another_currency(self, index: int) -> None:
        order = self._order(index)
        self._fact(
            GatewayEventKind.CAPTURED,
            order.id,
            order.total.amount,
            f"pi_{order.id}_usd",
            currency="USD",
        )

    @rule(amount=st.integers(0, 500))
    def capture_for_an_unknown_order(self, amount: int) -> None:
        self._fact(GatewayEventKind.CAPTURED, uuid4(), amount, f"pi_stray_{amount}")

    @invariant()
    def stock_invariants_hold_and_holds_match_reserved_orders(self) -> None:
        reserved_by_sku = dict.fromkeys(SKUS, 0)
        for order_id in self.orders:
            order = self.runner.live[order_id]
            assert isinstance(order, Order)
            if order.status is OrderStatus.RESERVED:
                for sku, quantity in quantities_by_sku(order.lines).items():
                    reserved_by_sku[sku] += quantity
        for sku, item in self._items().items():
            item.check_holds()
            assert item.reserved == reserved_by_sku[sku]

    @invariant()
    def never_oversold(self) -> None:
        for sku, item in self._items().items():
            committed = self.stock_in[sku] - item.on_hand
            assert 0 <= committed <= self.stock_in[sku]

    def teardown(self) -> None:
        committed = dict.fromkeys(SKUS, 0)
        for aggregate_id, live in self.runner.live.items():
            assert self.app.repository.get(aggregate_id) == live, f"replay differs from live {live!r}"
            if isinstance(live, Order) and any(
                type(event).__name__ == "Paid" for event in self.app.history(aggregate_id)
            ):
                assert live.status in COMMITTED_STATUSES
                for sku, quantity in quantities_by_sku(live.lines).items():
                    committed[sku] += quantity
        for sku, item in self._items().items():
            assert self.stock_in[sku] - item.on_hand == committed[sku], "stock left without a paid order"


CommerceMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestCommerceMachine = CommerceMachine.TestCase
