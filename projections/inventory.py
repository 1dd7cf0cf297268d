"""Read model ``inventory_levels``: one row per merchant and SKU."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from domain.inventory import InventoryItem
from projections.state import AggregateStateProjection


class InventoryLevelsProjection(AggregateStateProjection):
    """Keeps ``inventory_levels`` equal to each inventory item's level."""

    default_name = "inventory_levels"
    aggregate_class = InventoryItem
    default_table = "inventory_levels"
    columns = ("merchant_id", "sku", "item_id", "on_hand", "reserved", "updated_at", "version", "position")
    key_column = "item_id"
    conflict_columns = ("merchant_id", "sku")
    updated_columns = ("on_hand", "reserved", "updated_at", "version", "position")

    def row(self, aggregate: Aggregate, position: int) -> tuple[Any, ...]:
        """The level's row."""
        assert isinstance(aggregate, InventoryItem)
        level = aggregate.level()
        return (
            level.merchant_id,
            level.sku,
            level.id,
            level.on_hand,
            level.reserved,
            level.updated_at,
            level.version,
            position,
        )
