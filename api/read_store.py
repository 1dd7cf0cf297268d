"""Read paths over the read models and the event store (SQL built once, reused)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg import Connection, sql

from api.schemas import EventRead, LevelRead, LineRead, Money, OrderRead
from domain.events import event_data, event_metadata, event_type, format_time, stream_type

_LEVEL_COLUMNS = sql.SQL("sku, on_hand, reserved, available, updated_at")
_LEVEL = sql.SQL("SELECT {} FROM inventory_levels WHERE merchant_id = %s AND sku = %s").format(_LEVEL_COLUMNS)
_LEVELS = sql.SQL("SELECT {} FROM inventory_levels WHERE merchant_id = %s AND sku > %s ORDER BY sku LIMIT %s").format(
    _LEVEL_COLUMNS
)

_ORDER_COLUMNS = sql.SQL(
    "order_id, status, currency, customer_ref, lines, total, amount_captured, amount_refunded, "
    "payment_ids, hold_expires_at, created_at, updated_at"
)
_ORDER = sql.SQL("SELECT {} FROM orders_view WHERE merchant_id = %s AND order_id = %s").format(_ORDER_COLUMNS)
_ORDERS = sql.SQL(
    "SELECT {} FROM orders_view WHERE merchant_id = %s AND (created_at, order_id) > (%s, %s) "
    "ORDER BY created_at, order_id LIMIT %s"
).format(_ORDER_COLUMNS)
_ORDERS_BY_STATUS = sql.SQL(
    "SELECT {} FROM orders_view WHERE merchant_id = %s AND status = %s AND (created_at, order_id) > (%s, %s) "
    "ORDER BY created_at, order_id LIMIT %s"
).format(_ORDER_COLUMNS)
_STREAM = sql.SQL(
    "SELECT notification_id, originator_id, originator_version, topic, state FROM daybook_events "
    "WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version LIMIT %s"
)


def level(conn: Connection[Any], merchant_id: uuid.UUID, sku: str) -> LevelRead | None:
    """One inventory level from the read model."""
    row = conn.execute(_LEVEL, (merchant_id, sku)).fetchone()
    return LevelRead(*row) if row else None


def levels(conn: Connection[Any], merchant_id: uuid.UUID, after_sku: str, limit: int) -> list[LevelRead]:
    """A page of levels in SKU order."""
    return [LevelRead(*row) for row in conn.execute(_LEVELS, (merchant_id, after_sku, limit))]


def _order(row: tuple[Any, ...]) -> OrderRead:
    (
        order_id,
        status,
        currency,
        customer_ref,
        lines,
        total,
        captured,
        refunded,
        payment_ids,
        expires,
        created,
        updated,
    ) = row
    return OrderRead(
        id=order_id,
        status=status,
        currency=currency,
        customer_ref=customer_ref,
        lines=[
            LineRead(
                line["sku"],
                line["quantity"],
                Money(line["unit_price"]["amount"], line["unit_price"]["currency"]),
            )
            for line in lines
        ],
        total=Money(total, currency),
        amount_captured=Money(captured, currency),
        amount_refunded=Money(refunded, currency),
        payment_ids=list(payment_ids),
        hold_expires_at=expires,
        created_at=created,
        updated_at=updated,
    )


def order(conn: Connection[Any], merchant_id: uuid.UUID, order_id: uuid.UUID) -> OrderRead | None:
    """One order from the read model."""
    row = conn.execute(_ORDER, (merchant_id, order_id)).fetchone()
    return _order(row) if row else None


def orders(
    conn: Connection[Any],
    merchant_id: uuid.UUID,
    status: str | None,
    after: tuple[datetime, uuid.UUID],
    limit: int,
) -> list[OrderRead]:
    """A page of orders in creation order, optionally of one status."""
    if status is None:
        rows = conn.execute(_ORDERS, (merchant_id, *after, limit))
    else:
        rows = conn.execute(_ORDERS_BY_STATUS, (merchant_id, status, *after, limit))
    return [_order(row) for row in rows]


def stream_events(
    conn: Connection[Any], mapper: Any, stream_id: uuid.UUID, after_version: int, limit: int
) -> list[EventRead]:
    """A stream's events in version order, in the audit event shape."""
    result = []
    for position, originator_id, version, topic, state in conn.execute(_STREAM, (stream_id, after_version, limit)):
        event = mapper.to_domain_event(StoredEvent(originator_id, version, topic, bytes(state)))
        result.append(
            EventRead(
                position=position,
                stream_id=originator_id,
                stream_type=stream_type(event),
                version=version,
                type=event_type(event),
                occurred_at=format_time(event.timestamp),
                data=event_data(event),
                metadata=event_metadata(event),
            )
        )
    return result
