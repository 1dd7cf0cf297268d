"""Inventory: one aggregate per (merchant, SKU), with holds modelled on pending transfers.

An order *holds* stock (pending, with an expiry); payment *commits* the hold (the units
leave ``on_hand`` and ``reserved`` together); cancel or expiry *releases* it. After
every event: ``on_hand ≥ 0``, ``0 ≤ reserved ≤ on_hand``, ``reserved`` equals the sum
of the holds, and ``available = on_hand - reserved``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple
from uuid import UUID, uuid5

from domain import limits
from domain.context import CommandContext
from domain.errors import (
    InsufficientStockError,
    InvalidCommandError,
    InvalidStateError,
    OutOfStockError,
    Shortage,
)
from domain.events import DaybookAggregate, DaybookCreated, DaybookEvent
from domain.validation import check_amount, check_aware, check_sku, check_text

INVENTORY_NAMESPACE = UUID("0b6f2f0e-5d43-4c1e-9b3a-7e2a51c0d8f4")


@lru_cache(maxsize=100_000)
def inventory_item_id(merchant_id: UUID, sku: str) -> UUID:
    """The id of the merchant's inventory item for ``sku``: one stream per SKU."""
    return uuid5(INVENTORY_NAMESPACE, f"{merchant_id}:{sku}")


class Hold(NamedTuple):
    """Units held for one order until they are committed, released or expire."""

    quantity: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class InventoryLevel:
    """A frozen view of one inventory item (the contract's level shape, plus ids)."""

    id: UUID
    merchant_id: UUID
    sku: str
    on_hand: int
    reserved: int
    available: int
    updated_at: datetime
    version: int

    def as_record(self) -> dict[str, Any]:
        """The level as JSON-friendly values (kept by an idempotency marker)."""
        return {
            "id": str(self.id),
            "merchant_id": str(self.merchant_id),
            "sku": self.sku,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "available": self.available,
            "updated_at": self.updated_at.isoformat(),
            "version": self.version,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> InventoryLevel:
        """The level :meth:`as_record` kept."""
        return cls(
            id=UUID(record["id"]),
            merchant_id=UUID(record["merchant_id"]),
            sku=record["sku"],
            on_hand=record["on_hand"],
            reserved=record["reserved"],
            available=record["available"],
            updated_at=datetime.fromisoformat(record["updated_at"]),
            version=record["version"],
        )


class InventoryItem(DaybookAggregate):
    """Stock of one SKU of one merchant."""

    class Registered(DaybookCreated):
        """The merchant's first stock movement of this SKU."""

        sku: str

    class StockReceived(DaybookEvent):
        """Units arrived. v2 added ``reference`` (a delivery note, a PO number)."""

        quantity: int
        reference: str | None = None
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """v1 receipts had no reference."""
            state["reference"] = None

        def apply(self, aggregate: InventoryItem) -> None:
            aggregate.on_hand += self.quantity
            aggregate.check_invariants()

    class StockAdjusted(DaybookEvent):
        """A correction of ``on_hand`` (stock count, damage, shrinkage)."""

        delta: int
        reason: str

        def apply(self, aggregate: InventoryItem) -> None:
            aggregate.on_hand += self.delta
            aggregate.check_invariants()

    class StockHeld(DaybookEvent):
        """Units set aside for an order until ``expires_at``."""

        order_id: UUID
        quantity: int
        expires_at: datetime

        def apply(self, aggregate: InventoryItem) -> None:
            aggregate.holds[self.order_id] = Hold(self.quantity, self.expires_at)
            aggregate.reserved += self.quantity
            aggregate.check_invariants()

    class StockCommitted(DaybookEvent):
        """The order was paid: its held units left the shelf."""

        order_id: UUID
        quantity: int

        def apply(self, aggregate: InventoryItem) -> None:
            del aggregate.holds[self.order_id]
            aggregate.reserved -= self.quantity
            aggregate.on_hand -= self.quantity
            aggregate.check_invariants()

    class StockReleased(DaybookEvent):
        """The order's hold ended without a sale (``reason``: cancelled, expired)."""

        order_id: UUID
        quantity: int
        reason: str

        def apply(self, aggregate: InventoryItem) -> None:
            del aggregate.holds[self.order_id]
            aggregate.reserved -= self.quantity
            aggregate.check_invariants()

    def __init__(self, merchant_id: UUID, sku: str) -> None:
        self.merchant_id = merchant_id
        self.sku = sku
        self.on_hand = 0
        self.reserved = 0
        self.holds: dict[UUID, Hold] = {}

    @classmethod
    def register(cls, merchant_id: UUID, sku: str, context: CommandContext) -> InventoryItem:
        """Starts the stream of the merchant's ``sku``, with nothing on hand."""
        check_sku(sku)
        return cls._create(
            cls.Registered,
            id=inventory_item_id(merchant_id, sku),
            merchant_id=merchant_id,
            metadata=context.metadata(),
            timestamp=context.occurred_at,
            sku=sku,
        )

    @property
    def available(self) -> int:
        """Units that can still be held: ``on_hand - reserved``."""
        return self.on_hand - self.reserved

    def receive(self, quantity: int, reference: str | None, context: CommandContext) -> None:
        """Adds ``quantity`` (1 to ``RECEIPT_QUANTITY_MAX``) units to ``on_hand``.

        Raises:
            InvalidCommandError: a bad quantity or reference, or ``on_hand`` would pass
                ``ON_HAND_MAX``.
        """
        check_amount("quantity", quantity, minimum=1, maximum=limits.RECEIPT_QUANTITY_MAX)
        check_text("reference", reference, required=False)
        if self.on_hand + quantity > limits.ON_HAND_MAX:
            raise InvalidCommandError("quantity", f"on hand would pass {limits.ON_HAND_MAX}")
        self._record(self.StockReceived, context, quantity=quantity, reference=reference)

    def adjust(self, delta: int, reason: str, context: CommandContext) -> None:
        """Corrects ``on_hand`` by ``delta`` (≠ 0).

        Raises:
            InsufficientStockError: when ``on_hand`` would drop below ``reserved``.
        """
        check_amount("delta", delta, minimum=None, maximum=limits.ADJUSTMENT_DELTA_MAX)
        if delta == 0:
            raise InvalidCommandError("delta", "must not be 0")
        check_text("reason", reason, required=True)
        if self.on_hand + delta > limits.ON_HAND_MAX:
            raise InvalidCommandError("delta", f"on hand would pass {limits.ON_HAND_MAX}")
        if self.on_hand + delta < self.reserved:
            raise InsufficientStockError(self.sku, self.on_hand, self.reserved, delta)
        self._record(self.StockAdjusted, context, delta=delta, reason=reason)

    def shortage(self, quantity: int) -> Shortage | None:
        """What is missing to hold ``quantity`` units, or ``None`` when they can be held."""
        if quantity <= self.available:
            return None
        return Shortage(sku=self.sku, requested=quantity, available=self.available)

    def hold(self, order_id: UUID, quantity: int, expires_at: datetime, context: CommandContext) -> None:
        """Reserves ``quantity`` units for ``order_id`` until ``expires_at``.

        Raises:
            OutOfStockError: when fewer than ``quantity`` units are available.
            InvalidStateError: when the order already holds this SKU.
        """
        check_amount("quantity", quantity, minimum=1)
        check_aware("expires_at", expires_at)
        if order_id in self.holds:
            raise InvalidStateError("held", "hold stock again for the same order", self.id)
        shortage = self.shortage(quantity)
        if shortage is not None:
            raise OutOfStockError([shortage])
        self._record(self.StockHeld, context, order_id=order_id, quantity=quantity, expires_at=expires_at)

    def commit(self, order_id: UUID, context: CommandContext) -> bool:
        """Turns the order's hold into a sale. Returns ``False`` (no event) without a hold."""
        hold = self.holds.get(order_id)
        if hold is None:
            return False
        self._record(self.StockCommitted, context, order_id=order_id, quantity=hold.quantity)
        return True

    def release(self, order_id: UUID, reason: str, context: CommandContext) -> bool:
        """Gives the order's held units back. Returns ``False`` (no event) without a hold."""
        check_text("reason", reason, required=True)
        hold = self.holds.get(order_id)
        if hold is None:
            return False
        self._record(self.StockReleased, context, order_id=order_id, quantity=hold.quantity, reason=reason)
        return True

    def check_invariants(self) -> None:
        """Asserts the stock invariants after every event (a failure is a programming error).

        Constant time: it runs on every event of a SKU that may hold thousands of orders.
        :meth:`check_holds` adds the linear check that ``reserved`` sums the holds.
        """
        assert self.on_hand >= 0, self
        assert 0 <= self.reserved <= self.on_hand, self

    def check_holds(self) -> None:
        """Asserts that ``reserved`` equals the sum of the holds (linear in the holds)."""
        self.check_invariants()
        assert self.reserved == sum(hold.quantity for hold in self.holds.values()), self

    def level(self) -> InventoryLevel:
        """A frozen view of the current level."""
        return InventoryLevel(
            id=self.id,
            merchant_id=self.merchant_id,
            sku=self.sku,
            on_hand=self.on_hand,
            reserved=self.reserved,
            available=self.available,
            updated_at=self.updated_at,
            version=self.version,
        )
