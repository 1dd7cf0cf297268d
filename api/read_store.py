"""Read paths over the read models and the event store (SQL built once, reused).

The reconciliation list reads the payments' anomalies (from ``payments_view``) and the
orders that are ``paid_unfulfillable`` (from ``orders_view``) in one keyset order, so
that it can be paginated.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import Connection, sql

from adapters.audit_events import stored_event_shape, with_hashes
from api.schemas import EventRead, LevelRead, LineRead, Money, OrderRead, PaymentRead
from domain.orders import OrderStatus, OrderView
from domain.payments import AnomalyKind, PaymentView
from projections.inventory import InventoryLevelsProjection
from projections.orders import OrdersProjection
from projections.payments import PaymentsProjection


def _not_quarantined(projection: str, key: str) -> sql.Composed:
    """Rows of aggregates the projection set aside are stale: reads replay those instead."""
    return sql.SQL(
        "NOT EXISTS (SELECT 1 FROM projection_quarantine q WHERE q.projection = {} AND q.quarantine_key = {})"
    ).format(sql.Literal(projection), sql.Identifier(key))


_LEVEL_LIVE = _not_quarantined(InventoryLevelsProjection.default_name, "item_id")
_LEVEL_COLUMNS = sql.SQL("sku, on_hand, reserved, available, updated_at")
_LEVEL = sql.SQL("SELECT {} FROM inventory_levels WHERE merchant_id = %s AND sku = %s AND {}").format(
    _LEVEL_COLUMNS, _LEVEL_LIVE
)
_LEVELS = sql.SQL(
    "SELECT {} FROM inventory_levels WHERE merchant_id = %s AND sku > %s AND {} ORDER BY sku LIMIT %s"
).format(_LEVEL_COLUMNS, _LEVEL_LIVE)

_ORDER_LIVE = _not_quarantined(OrdersProjection.default_name, "order_id")
_ORDER_COLUMNS = sql.SQL(
    "order_id, status, currency, customer_ref, lines, total, amount_captured, amount_refunded, "
    "payment_ids, hold_expires_at, created_at, updated_at"
)
_ORDER = sql.SQL("SELECT {} FROM orders_view WHERE merchant_id = %s AND order_id = %s AND {}").format(
    _ORDER_COLUMNS, _ORDER_LIVE
)
_ORDERS = sql.SQL(
    "SELECT {} FROM orders_view WHERE merchant_id = %s AND (created_at, order_id) > (%s, %s) AND {} "
    "ORDER BY created_at, order_id LIMIT %s"
).format(_ORDER_COLUMNS, _ORDER_LIVE)
_ORDERS_BY_STATUS = sql.SQL(
    "SELECT {} FROM orders_view WHERE merchant_id = %s AND status = %s AND (created_at, order_id) > (%s, %s) "
    "AND {} ORDER BY created_at, order_id LIMIT %s"
).format(_ORDER_COLUMNS, _ORDER_LIVE)
_STREAM = sql.SQL(
    "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, c.hash, c.prev_hash "
    "FROM daybook_events e LEFT JOIN audit_chain c ON c.position = e.notification_id "
    "WHERE e.originator_id = %s AND e.originator_version > %s ORDER BY e.originator_version LIMIT %s"
)

_PAYMENT_LIVE = _not_quarantined(PaymentsProjection.default_name, "payment_id")
_PAYMENT_COLUMNS = sql.SQL(
    "payment_id, order_id, gateway, gateway_ref, status, amount_authorized, amount_captured, amount_refunded, "
    "currency, created_at, updated_at"
)
_PAYMENT = sql.SQL("SELECT {} FROM payments_view WHERE merchant_id = %s AND payment_id = %s AND {}").format(
    _PAYMENT_COLUMNS, _PAYMENT_LIVE
)
_PAYMENTS = sql.SQL(
    "SELECT {} FROM payments_view WHERE merchant_id = %s AND (created_at, payment_id) > (%s, %s) AND {} "
    "ORDER BY created_at, payment_id LIMIT %s"
).format(_PAYMENT_COLUMNS, _PAYMENT_LIVE)
_PAYMENTS_OF_ORDER = sql.SQL(
    "SELECT {} FROM payments_view WHERE merchant_id = %s AND order_id = %s AND (created_at, payment_id) > (%s, %s) "
    "AND {} ORDER BY created_at, payment_id LIMIT %s"
).format(_PAYMENT_COLUMNS, _PAYMENT_LIVE)

# A payment's paid_unfulfillable anomaly is left out: the order row below reports it
# while the order is still in that status (a refund later resolves it).
_UNFULFILLABLE = " but the stock could not be held again"
_ISSUES = sql.SQL(
    "SELECT kind, order_id, payment_id, detail, created_at, sort_id FROM ("
    " SELECT anomaly->>'kind' AS kind, p.order_id, p.payment_id, anomaly->>'detail' AS detail,"
    " p.created_at, p.payment_id AS sort_id"
    " FROM payments_view p CROSS JOIN LATERAL jsonb_array_elements(p.anomalies) AS anomaly"
    " WHERE p.merchant_id = %(merchant)s AND p.anomalies <> '[]'::jsonb"
    " AND (p.created_at, p.payment_id) >= (%(created)s, %(id)s)"
    " AND anomaly->>'kind' <> %(unfulfillable)s AND {payment_live}"
    " UNION ALL"
    " SELECT %(unfulfillable)s, o.order_id, NULL::uuid, {unfulfillable_detail}, o.created_at, o.order_id"
    " FROM orders_view o WHERE o.merchant_id = %(merchant)s AND o.status = %(unfulfillable)s"
    " AND (o.created_at, o.order_id) >= (%(created)s, %(id)s) AND {order_live}"
    ") issues WHERE (created_at, sort_id, kind) > (%(created)s, %(id)s, %(kind)s)"
    " ORDER BY created_at, sort_id, kind LIMIT %(limit)s"
).format(
    payment_live=_PAYMENT_LIVE,
    order_live=_ORDER_LIVE,
    unfulfillable_detail=sql.SQL("'paid ' || o.amount_captured || ' ' || o.currency || {}").format(
        sql.Literal(_UNFULFILLABLE)
    ),
)


@dataclass(frozen=True, slots=True)
class IssueRow:
    """One thing to reconcile, with its keyset position.

    Attributes:
        kind: an :class:`~domain.payments.AnomalyKind` value.
        order_id: the order concerned, if known.
        payment_id: the payment concerned (``None`` for an order-level issue).
        detail: human-readable description.
        created_at: when the payment or order was created (the list order).
        sort_id: the payment or order id (ties within ``created_at``).
    """

    kind: str
    order_id: UUID | None
    payment_id: UUID | None
    detail: str
    created_at: datetime
    sort_id: UUID


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
    """A stream's events in version order, in the audit event shape (chain fields once chained)."""
    result = []
    rows = conn.execute(_STREAM, (stream_id, after_version, limit))
    for position, originator_id, version, topic, state, chained_hash, prev_hash in rows:
        shape = stored_event_shape(mapper, position, StoredEvent(originator_id, version, topic, bytes(state)))
        if chained_hash is not None:
            shape = with_hashes(shape, bytes(chained_hash).hex(), bytes(prev_hash).hex())
        result.append(EventRead(**shape))
    return result


def payment(conn: Connection[Any], merchant_id: UUID, payment_id: UUID) -> PaymentRead | None:
    """One payment of the merchant from the read model."""
    row = conn.execute(_PAYMENT, (merchant_id, payment_id)).fetchone()
    return PaymentRead(*row) if row else None


def payments(
    conn: Connection[Any],
    merchant_id: UUID,
    order_id: UUID | None,
    after: tuple[datetime, UUID],
    limit: int,
) -> list[PaymentRead]:
    """A page of the merchant's payments (of one order, if given) in creation order."""
    if order_id is None:
        rows = conn.execute(_PAYMENTS, (merchant_id, *after, limit))
    else:
        rows = conn.execute(_PAYMENTS_OF_ORDER, (merchant_id, order_id, *after, limit))
    return [PaymentRead(*row) for row in rows]


def reconciliation_issues(
    conn: Connection[Any],
    merchant_id: UUID,
    after: tuple[datetime, UUID, str],
    limit: int,
) -> list[IssueRow]:
    """A page of the merchant's issues, ordered by (created_at, payment or order id, kind)."""
    created, sort_id, kind = after
    parameters = {
        "merchant": merchant_id,
        "created": created,
        "id": sort_id,
        "kind": kind,
        "unfulfillable": AnomalyKind.PAID_UNFULFILLABLE.value,
        "limit": limit,
    }
    return [IssueRow(*row) for row in conn.execute(_ISSUES, parameters)]


def payment_issues(view: PaymentView) -> list[IssueRow]:
    """A payment's reconciliation issues, as the list shows them (from a replayed payment)."""
    return [
        IssueRow(str(anomaly.kind), view.order_id, view.id, anomaly.detail, view.created_at, view.id)
        for anomaly in view.anomalies
        if anomaly.kind is not AnomalyKind.PAID_UNFULFILLABLE
    ]


def order_issues(view: OrderView) -> list[IssueRow]:
    """An order's reconciliation issue, if it is paid but unfulfillable (from a replayed order)."""
    if view.status is not OrderStatus.PAID_UNFULFILLABLE:
        return []
    detail = f"paid {view.amount_captured.amount} {view.currency}{_UNFULFILLABLE}"
    return [IssueRow(AnomalyKind.PAID_UNFULFILLABLE.value, view.id, None, detail, view.created_at, view.id)]
