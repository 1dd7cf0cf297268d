"""Payment values: statuses, anomalies, the frozen view, and fact validation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain import limits
from domain.errors import InvalidCommandError
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.money import check_currency
from domain.validation import check_amount, check_text


class PaymentStatus(StrEnum):
    """The contract's payment statuses."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    DISPUTED = "disputed"


class AnomalyKind(StrEnum):
    """What reconciliation should look at."""

    UNKNOWN_ORDER = "unknown_order"
    CURRENCY_MISMATCH = "currency_mismatch"
    OVERPAYMENT = "overpayment"
    PAID_UNFULFILLABLE = "paid_unfulfillable"
    CAPTURE_EXCEEDS_AUTHORIZATION = "capture_exceeds_authorization"
    REFUND_EXCEEDS_CAPTURE = "refund_exceeds_capture"
    REFUND_AMOUNT_CONFLICT = "refund_amount_conflict"
    CURRENCY_CONFLICT = "currency_conflict"
    ORDER_CONFLICT = "order_conflict"


@dataclass(frozen=True, slots=True, order=True)
class Anomaly:
    """Something about a payment that a person should reconcile."""

    kind: AnomalyKind
    detail: str


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A frozen view of a payment (the contract's payment shape, plus anomalies)."""

    id: UUID
    merchant_id: UUID
    order_id: UUID | None
    gateway: str
    gateway_ref: str
    status: PaymentStatus
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    currency: str
    refunds: dict[str, int]
    anomalies: tuple[Anomaly, ...]
    created_at: datetime
    updated_at: datetime
    version: int


def check_gateway_event(fact: GatewayEvent) -> None:
    """Validates a gateway fact before anything is recorded.

    Raises:
        InvalidCommandError: a bad gateway, reference, amount, currency or refund id.
    """
    if not isinstance(fact.kind, GatewayEventKind):
        raise InvalidCommandError("kind", f"{fact.kind!r} is not a gateway event kind")
    id_length_max = limits.GATEWAY_ID_LENGTH_MAX
    check_text("gateway", fact.gateway, required=True, length_max=id_length_max)
    check_text("gateway_ref", fact.gateway_ref, required=True, length_max=id_length_max)
    check_text("event_id", fact.event_id, required=True, length_max=id_length_max)
    check_currency(fact.currency)
    is_refund = fact.kind is GatewayEventKind.REFUNDED
    names_a_refund = is_refund or fact.kind is GatewayEventKind.REFUND_REVERSED
    check_amount("amount", fact.amount, minimum=1 if is_refund else 0)
    check_text("refund_id", fact.refund_id, required=names_a_refund, length_max=id_length_max)
    check_text("total_ref", fact.total_ref, required=False, length_max=id_length_max)
    if is_refund and fact.total_ref is not None and fact.total_ref != fact.refund_id:
        raise InvalidCommandError("total_ref", "a refunds total is keyed by what it totals")
    if fact.order_id is not None and not isinstance(fact.order_id, UUID):
        raise InvalidCommandError("order_id", "must be a UUID")
