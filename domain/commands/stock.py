"""Stock commands: receipts and adjustments of a merchant's SKU."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.context import CommandContext
from domain.errors import InventoryItemNotFoundError
from domain.inventory import InventoryItem, InventoryLevel, inventory_item_id
from domain.unit_of_work import UnitOfWork
from domain.validation import check_sku


def find_item(uow: UnitOfWork, merchant_id: UUID, sku: str) -> InventoryItem | None:
    """The merchant's inventory item for ``sku``, or ``None`` if never stocked."""
    return uow.find(inventory_item_id(merchant_id, sku), InventoryItem)


@dataclass(frozen=True, slots=True)
class ReceiveStock:
    """Adds ``quantity`` units of ``sku``, registering the SKU on its first receipt.

    Raises (when called):
        InvalidCommandError: bad SKU, quantity or reference.
    """

    context: CommandContext
    merchant_id: UUID
    sku: str
    quantity: int
    reference: str | None = None

    def aggregate_ids(self) -> list[UUID]:
        """The inventory item it loads (a prefetch hint for batch runners)."""
        return [inventory_item_id(self.merchant_id, self.sku)]

    def __call__(self, uow: UnitOfWork, /) -> InventoryLevel:
        """Runs the command; returns the new level."""
        context = self.context.stamped()
        item = find_item(uow, self.merchant_id, self.sku)
        if item is not None:
            item.receive(self.quantity, self.reference, context)
            return item.level()
        item = InventoryItem.register(self.merchant_id, self.sku, context)
        item.receive(self.quantity, self.reference, context)
        # Added once its receipt is accepted: a refused receipt leaves nothing to save.
        uow.add(item)
        return item.level()


@dataclass(frozen=True, slots=True)
class AdjustStock:
    """Corrects ``on_hand`` of a stocked SKU by ``delta``.

    Raises (when called):
        InventoryItemNotFoundError: the SKU was never received (use a receipt).
        InsufficientStockError: ``on_hand`` would drop below ``reserved``.
        InvalidCommandError: bad SKU, a zero delta, or a missing reason.
    """

    context: CommandContext
    merchant_id: UUID
    sku: str
    delta: int
    reason: str

    def aggregate_ids(self) -> list[UUID]:
        """The inventory item it loads (a prefetch hint for batch runners)."""
        return [inventory_item_id(self.merchant_id, self.sku)]

    def __call__(self, uow: UnitOfWork, /) -> InventoryLevel:
        """Runs the command; returns the new level."""
        context = self.context.stamped()
        item = find_item(uow, self.merchant_id, check_sku(self.sku))
        if item is None:
            raise InventoryItemNotFoundError(self.sku)
        item.adjust(self.delta, self.reason, context)
        return item.level()
