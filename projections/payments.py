"""Read model ``payments_view``: one row per payment (its reads are in :mod:`api.read_store`)."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate
from psycopg.types.json import Jsonb

from domain.payments import Payment
from projections.state import AggregateStateProjection


class PaymentsProjection(AggregateStateProjection):
    """Keeps ``payments_view`` equal to each payment's view."""

    default_name = "payments"
    aggregate_class = Payment
    default_table = "payments_view"
    columns = (
        "payment_id",
        "merchant_id",
        "order_id",
        "gateway",
        "gateway_ref",
        "status",
        "amount_authorized",
        "amount_captured",
        "amount_refunded",
        "currency",
        "anomalies",
        "created_at",
        "updated_at",
        "version",
        "position",
    )
    key_column = "payment_id"
    conflict_columns = ("payment_id",)
    updated_columns = (
        "order_id",
        "status",
        "amount_authorized",
        "amount_captured",
        "amount_refunded",
        "currency",
        "anomalies",
        "updated_at",
        "version",
        "position",
    )

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
