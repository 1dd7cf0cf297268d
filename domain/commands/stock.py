"""Stock commands: receipts and adjustments of a merchant's SKU."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.context import CommandContext
from domain.errors import InventoryItemNotFoundError
from domain.inventory import (
    InventoryItem,
    InventoryLevel,
    check_sku,
    check_text,
    inventory_item_id,
)
from domain.money import check_amount
from domain.unit_of_work import UnitOfWork


def find_item(uow: UnitOfWork, merchant_id: UUID, sku: str) -> InventoryItem | None:
    """The merchant's inventory item for ``sku``, or ``None`` if never stocked."""
    return uow.find(inventory_item_id(merchant_id, sku), InventoryItem)


def receive_stock(
    uow: UnitOfWork,
    context: CommandContext,
    merchant_id: UUID,
    *,
    sku: str,
    quantity: int,
    reference: str | None = None,
) -> InventoryLevel:
    """Adds ``quantity`` units of ``sku``, registering the SKU on its first receipt.

    Raises:
        InvalidCommandError: bad SKU, quantity below 1, or bad reference.
    """
    context = context.stamped()
    check_sku(sku)
    check_amount("quantity", quantity, minimum=1)
    check_text("reference", reference, required=False)
    item = find_item(uow, merchant_id, sku)
    if item is None:
        item = InventoryItem.register(merchant_id, sku, context)
        uow.add(item)
    item.receive(quantity, reference, context)
    return item.level()


def adjust_stock(
    uow: UnitOfWork,
    context: CommandContext,
    merchant_id: UUID,
    *,
    sku: str,
    delta: int,
    reason: str,
) -> InventoryLevel:
    """Corrects ``on_hand`` of a stocked SKU by ``delta``.

    Raises:
        InventoryItemNotFoundError: the SKU was never received (use a receipt).
        InsufficientStockError: ``on_hand`` would drop below ``reserved``.
        InvalidCommandError: bad SKU, a zero delta, or a missing reason.
    """
    context = context.stamped()
    check_sku(sku)
    item = find_item(uow, merchant_id, sku)
    if item is None:
        raise InventoryItemNotFoundError(sku)
    item.adjust(delta, reason, context)
    return item.level()


@dataclass(frozen=True, slots=True)
class ReceiveStock:
    """:func:`receive_stock` as a command object for a runner."""

    context: CommandContext
    merchant_id: UUID
    sku: str
    quantity: int
    reference: str | None = None

    def aggregate_ids(self) -> list[UUID]:
        """The inventory item it loads (a prefetch hint for batch runners)."""
        return [inventory_item_id(self.merchant_id, self.sku)]

    def __call__(self, uow: UnitOfWork, /) -> InventoryLevel:
        return receive_stock(
            uow,
            self.context,
            self.merchant_id,
            sku=self.sku,
            quantity=self.quantity,
            reference=self.reference,
        )


@dataclass(frozen=True, slots=True)
class AdjustStock:
    """:func:`adjust_stock` as a command object for a runner."""

    context: CommandContext
    merchant_id: UUID
    sku: str
    delta: int
    reason: str

    def aggregate_ids(self) -> list[UUID]:
        """The inventory item it loads (a prefetch hint for batch runners)."""
        return [inventory_item_id(self.merchant_id, self.sku)]

    def __call__(self, uow: UnitOfWork, /) -> InventoryLevel:
        return adjust_stock(uow, self.context, self.merchant_id, sku=self.sku, delta=self.delta, reason=self.reason)
