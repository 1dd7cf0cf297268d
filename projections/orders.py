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

# Quarantined orders are not reflected in the table (their row may be stale): they are
# listed too, after the due ones, and the Order aggregate decides whether each is due.
_DUE_HOLDS = sql.SQL(
    "SELECT merchant_id, order_id FROM ("
    " SELECT merchant_id, order_id, hold_expires_at FROM orders_view"
    " WHERE status = 'reserved' AND hold_expires_at <= %(now)s"
    " UNION ALL"
    " SELECT merchant_id, quarantine_key, NULL FROM projection_quarantine"
    " WHERE projection = %(projection)s AND merchant_id IS NOT NULL"
    ") due ORDER BY hold_expires_at NULLS LAST LIMIT %(limit)s"
)


def due_holds(conn: psycopg.Connection[Any], now: datetime, limit: int) -> list[tuple[UUID, UUID]]:
    """(merchant id, order id) of orders the read model shows reserved past their hold, and quarantined ones."""
    parameters = {"now": now, "projection": OrdersProjection.default_name, "limit": limit}
    return [(row[0], row[1]) for row in conn.execute(_DUE_HOLDS, parameters)]


class OrdersProjection(AggregateStateProjection):
    """Keeps ``orders_view`` equal to each order's view."""

    default_name = "orders"
    aggregate_class = Order
    default_table = "orders_view"
    columns = (
        "order_id",
        "merchant_id",
        "status",
        "currency",
        "customer_ref",
        "lines",
        "total",
        "amount_captured",
        "amount_refunded",
        "payment_ids",
        "hold_expires_at",
        "created_at",
        "updated_at",
        "version",
        "position",
    )
    key_column = "order_id"
    conflict_columns = ("order_id",)
    updated_columns = (
        "status",
        "amount_captured",
        "amount_refunded",
        "payment_ids",
        "hold_expires_at",
        "updated_at",
        "version",
        "position",
    )

    def row(self, aggregate: Aggregate, position: int) -> tuple[Any, ...]:
        """The order's row."""
        assert isinstance(aggregate, Order)
        view = aggregate.view()
        lines = [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": {"amount": line.unit_price.amount, "currency": line.unit_price.currency},
            }
            for line in view.lines
        ]
        return (
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
