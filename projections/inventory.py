"""Read model ``inventory_levels``: one row per merchant and SKU."""

from __future__ import annotations

from typing import Any

import psycopg
from eventsourcing.domain import Aggregate
from psycopg import sql

from domain.inventory import InventoryItem
from projections.state import AggregateStateProjection

_UPSERT = sql.SQL(
    "INSERT INTO inventory_levels "
    "(merchant_id, sku, item_id, on_hand, reserved, updated_at, version, position) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (merchant_id, sku) DO UPDATE SET "
    "on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved, updated_at = EXCLUDED.updated_at, "
    "version = EXCLUDED.version, position = EXCLUDED.position "
    "WHERE inventory_levels.version < EXCLUDED.version"
)


class InventoryLevelsProjection(AggregateStateProjection):
    """Keeps ``inventory_levels`` equal to each inventory item's level."""

    name = "inventory_levels"
    aggregate_class = InventoryItem

    def write(self, cursor: psycopg.Cursor[Any], aggregates: list[tuple[Aggregate, int]]) -> None:
        """Upserts one row per item."""
        rows = []
        for aggregate, position in aggregates:
            assert isinstance(aggregate, InventoryItem)
            level = aggregate.level()
            rows.append(
                (
                    level.merchant_id,
                    level.sku,
                    level.id,
                    level.on_hand,
                    level.reserved,
                    level.updated_at,
                    level.version,
                    position,
                )
            )
        cursor.executemany(_UPSERT, rows)
