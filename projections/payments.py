"""Read model ``payments_view``: one row per payment; and the reads over it.

The reconciliation list is read here too: the payments' anomalies (from this table)
and the orders that are ``paid_unfulfillable`` (from ``orders_view``), in one keyset
order so that it can be paginated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate
from psycopg import sql
from psycopg.types.json import Jsonb

from domain.payments import AnomalyKind, Payment
from projections.state import AggregateStateProjection

_UPSERT = sql.SQL(
    "INSERT INTO payments_view (payment_id, merchant_id, order_id, gateway, gateway_ref, status, "
    "amount_authorized, amount_captured, amount_refunded, currency, anomalies, created_at, updated_at, "
    "version, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (payment_id) DO UPDATE SET order_id = EXCLUDED.order_id, status = EXCLUDED.status, "
    "amount_authorized = EXCLUDED.amount_authorized, amount_captured = EXCLUDED.amount_captured, "
    "amount_refunded = EXCLUDED.amount_refunded, currency = EXCLUDED.currency, anomalies = EXCLUDED.anomalies, "
    "updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, position = EXCLUDED.position "
    "WHERE payments_view.version < EXCLUDED.version"
)

_COLUMNS = sql.SQL(
    "payment_id, order_id, gateway, gateway_ref, status, amount_authorized, amount_captured, amount_refunded, "
    "currency, created_at, updated_at"
)
_PAYMENT = sql.SQL("SELECT {} FROM payments_view WHERE merchant_id = %s AND payment_id = %s").format(_COLUMNS)
_PAYMENTS = sql.SQL(
    "SELECT {} FROM payments_view WHERE merchant_id = %s AND (created_at, payment_id) > (%s, %s) "
    "ORDER BY created_at, payment_id LIMIT %s"
).format(_COLUMNS)
_PAYMENTS_OF_ORDER = sql.SQL(
    "SELECT {} FROM payments_view WHERE merchant_id = %s AND order_id = %s AND (created_at, payment_id) > (%s, %s) "
    "ORDER BY created_at, payment_id LIMIT %s"
).format(_COLUMNS)

# A payment's paid_unfulfillable anomaly is left out: the order row below reports it
# while the order is still in that status (a refund later resolves it).
_ISSUES = sql.SQL(
    "SELECT kind, order_id, payment_id, detail, created_at, sort_id FROM ("
    " SELECT anomaly->>'kind' AS kind, p.order_id, p.payment_id, anomaly->>'detail' AS detail,"
    " p.created_at, p.payment_id AS sort_id"
    " FROM payments_view p CROSS JOIN LATERAL jsonb_array_elements(p.anomalies) AS anomaly"
    " WHERE p.merchant_id = %(merchant)s AND p.anomalies <> '[]'::jsonb"
    " AND (p.created_at, p.payment_id) >= (%(created)s, %(id)s)"
    " AND anomaly->>'kind' <> %(unfulfillable)s"
    " UNION ALL"
    " SELECT %(unfulfillable)s, o.order_id, NULL::uuid,"
    " 'paid ' || o.amount_captured || ' ' || o.currency || ' but the stock could not be held again',"
    " o.created_at, o.order_id"
    " FROM orders_view o WHERE o.merchant_id = %(merchant)s AND o.status = %(unfulfillable)s"
    " AND (o.created_at, o.order_id) >= (%(created)s, %(id)s)"
    ") issues WHERE (created_at, sort_id, kind) > (%(created)s, %(id)s, %(kind)s)"
    " ORDER BY created_at, sort_id, kind LIMIT %(limit)s"
)


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """A payment as the read model holds it (the contract's payment shape)."""

    id: UUID
    order_id: UUID | None
    gateway: str
    gateway_ref: str
    status: str
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    currency: str
    created_at: datetime
    updated_at: datetime


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


class PaymentsProjection(AggregateStateProjection):
    """Keeps ``payments_view`` equal to each payment's view."""

    name = "payments"
    aggregate_class = Payment

    def write(self, cursor: psycopg.Cursor[Any], aggregates: list[tuple[Aggregate, int]]) -> None:
        """Upserts one row per payment."""
        rows = []
        for aggregate, position in aggregates:
            assert isinstance(aggregate, Payment)
            view = aggregate.view()
            anomalies = [{"kind": str(anomaly.kind), "detail": anomaly.detail} for anomaly in view.anomalies]
            rows.append(
                (
                    view.id,
                    view.merchant_id,
                    view.order_id,
                    view.gateway,
                    view.gateway_ref,
                    str(view.status),
                    view.amount_authorized,
                    view.amount_captured,
                    view.amount_refunded,
                    view.currency,
                    Jsonb(anomalies),
                    view.created_at,
                    view.updated_at,
                    view.version,
                    position,
                )
            )
        cursor.executemany(_UPSERT, rows)


def payment(conn: psycopg.Connection[Any], merchant_id: UUID, payment_id: UUID) -> PaymentRow | None:
    """One payment of the merchant from the read model."""
    row = conn.execute(_PAYMENT, (merchant_id, payment_id)).fetchone()
    return PaymentRow(*row) if row else None


def payments(
    conn: psycopg.Connection[Any],
    merchant_id: UUID,
    order_id: UUID | None,
    after: tuple[datetime, UUID],
    limit: int,
) -> list[PaymentRow]:
    """A page of the merchant's payments (of one order, if given) in creation order."""
    if order_id is None:
        rows = conn.execute(_PAYMENTS, (merchant_id, *after, limit))
    else:
        rows = conn.execute(_PAYMENTS_OF_ORDER, (merchant_id, order_id, *after, limit))
    return [PaymentRow(*row) for row in rows]


def reconciliation_issues(
    conn: psycopg.Connection[Any],
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
