"""The inventory bounded context: one :class:`InventoryItem` per merchant and SKU."""

from eventsourcing.utils import register_topic

from domain.inventory.aggregate import INVENTORY_NAMESPACE, Hold, InventoryItem, InventoryLevel, inventory_item_id

# Events stored before the context became a package name their classes under the old
# module path ("domain.inventory:InventoryItem.StockReceived"); nested event classes
# resolve through their aggregate's topic.
register_topic("domain.inventory:InventoryItem", InventoryItem)

__all__ = ["INVENTORY_NAMESPACE", "Hold", "InventoryItem", "InventoryLevel", "inventory_item_id"]
