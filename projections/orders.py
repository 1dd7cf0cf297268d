"""Read model ``orders_view``: one row per order."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate
from psycopg import sql
from psycopg.types.json import Jsonb

from domain.orders import Order
from projections.state import AggregateStateProjection

_UPSERT = sql.SQL(
    "INSERT INTO orders_view (order_id, merchant_id, status, currency, customer_ref, lines, total, "
    "amount_captured, amount_refunded, payment_ids, hold_expires_at, created_at, updated_at, version, position) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, amount_captured = EXCLUDED.amount_captured, "
    "amount_refunded = EXCLUDED.amount_refunded, payment_ids = EXCLUDED.payment_ids, "
    "hold_expires_at = EXCLUDED.hold_expires_at, updated_at = EXCLUDED.updated_at, "
    "version = EXCLUDED.version, position = EXCLUDED.position "
    "WHERE orders_view.version < EXCLUDED.version"
)
_DUE_HOLDS = sql.SQL(
    "SELECT merchant_id, order_id FROM orders_view WHERE status = 'reserved' AND hold_expires_at <= %s "
    "ORDER BY hold_expires_at LIMIT %s"
)


def due_holds(conn: psycopg.Connection[Any], now: datetime, limit: int) -> list[tuple[UUID, UUID]]:
    """(merchant id, order id) of orders the read model shows reserved past their hold."""
    return [(row[0], row[1]) for row in conn.execute(_DUE_HOLDS, (now, limit))]


class OrdersProjection(AggregateStateProjection):
    """Keeps ``orders_view`` equal to each order's view."""

    name = "orders"
    aggregate_class = Order

    def write(self, cursor: psycopg.Cursor[Any], aggregates: list[tuple[Aggregate, int]]) -> None:
        """Upserts one row per order."""
        rows = []
        for aggregate, position in aggregates:
            assert isinstance(aggregate, Order)
            view = aggregate.view()
            lines = [
                {
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price": {
                        "amount": line.unit_price.amount,
                        "currency": line.unit_price.currency,
                    },
                }
                for line in view.lines
            ]
            rows.append(
                (
                    view.id,
                    view.merchant_id,
                    str(view.status),
                    view.currency,
                    view.customer_ref,
                    Jsonb(lines),
                    view.total.amount,
                    view.amount_captured.amount,
                    view.amount_refunded.amount,
                    list(view.payment_ids),
                    view.hold_expires_at,
                    view.created_at,
                    view.updated_at,
                    view.version,
                    position,
                )
            )
        cursor.executemany(_UPSERT, rows)
