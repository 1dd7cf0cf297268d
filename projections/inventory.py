"""Read model ``inventory_levels``: one row per merchant and SKU."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate
from psycopg import sql

from domain.inventory import InventoryItem
from projections.state import AggregateStateProjection


class InventoryLevelsProjection(AggregateStateProjection):
    """Keeps ``inventory_levels`` equal to each inventory item's level."""

    default_name = "inventory_levels"
    aggregate_class = InventoryItem
    default_table = "inventory_levels"
    upsert = sql.SQL(
        "INSERT INTO {table} AS t (merchant_id, sku, item_id, on_hand, reserved, updated_at, version, position) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (merchant_id, sku) DO UPDATE SET "
        "on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved, updated_at = EXCLUDED.updated_at, "
        "version = EXCLUDED.version, position = EXCLUDED.position "
        "WHERE t.version < EXCLUDED.version"
    )

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
