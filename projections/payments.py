"""Read model ``payments_view``: one row per payment (its reads are in :mod:`api.read_store`)."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate
from psycopg import sql
from psycopg.types.json import Jsonb

from domain.payments import Payment
from projections.state import AggregateStateProjection

_UPSERT = sql.SQL(
    "INSERT INTO {table} AS t (payment_id, merchant_id, order_id, gateway, gateway_ref, status, "
    "amount_authorized, amount_captured, amount_refunded, currency, anomalies, created_at, updated_at, "
    "version, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (payment_id) DO UPDATE SET order_id = EXCLUDED.order_id, status = EXCLUDED.status, "
    "amount_authorized = EXCLUDED.amount_authorized, amount_captured = EXCLUDED.amount_captured, "
    "amount_refunded = EXCLUDED.amount_refunded, currency = EXCLUDED.currency, anomalies = EXCLUDED.anomalies, "
    "updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, position = EXCLUDED.position "
    "WHERE t.version < EXCLUDED.version"
)


class PaymentsProjection(AggregateStateProjection):
    """Keeps ``payments_view`` equal to each payment's view."""

    default_name = "payments"
    aggregate_class = Payment
    default_table = "payments_view"
    upsert = _UPSERT

    def row(self, aggregate: Aggregate, position: int) -> tuple[Any, ...]:
        """The payment's row."""
        assert isinstance(aggregate, Payment)
        view = aggregate.view()
        anomalies = [{"kind": str(anomaly.kind), "detail": anomaly.detail} for anomaly in view.anomalies]
        return (
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
