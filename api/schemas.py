"""Request and response shapes (msgspec), split Create/Read as in CONTRACT.md."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from domain import currencies, limits
from domain.inventory import InventoryLevel
from domain.orders import OrderView
from domain.payments import PaymentView

# Every bound comes from domain.limits (tests/unit/test_limits.py checks each one).
Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.SKU_LENGTH_MAX, pattern=limits.SKU_PATTERN)]
if TYPE_CHECKING:
    Currency = str
else:  # one literal per ISO 4217 code with a minor unit: an enum in the OpenAPI document
    Currency = Literal[currencies.CODES]
Amount = Annotated[int, msgspec.Meta(ge=0, le=limits.AMOUNT_MAX)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.TEXT_LENGTH_MAX, pattern=limits.TEXT_PATTERN)]


class Money(msgspec.Struct, forbid_unknown_fields=True):
    """Integer minor units and an ISO 4217 currency."""

    amount: Amount
    currency: Currency


class UnitPrice(msgspec.Struct, forbid_unknown_fields=True):
    """A line's price per unit: money, at most ``UNIT_PRICE_MAX`` minor units."""

    amount: Annotated[int, msgspec.Meta(ge=0, le=limits.UNIT_PRICE_MAX)]
    currency: Currency


class ReceiptCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/inventory/{sku}/receipts``."""

    quantity: Annotated[int, msgspec.Meta(ge=1, le=limits.RECEIPT_QUANTITY_MAX)]
    reference: Text | None = None


class AdjustmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/inventory/{sku}/adjustments``."""

    delta: Annotated[int, msgspec.Meta(ge=-limits.ADJUSTMENT_DELTA_MAX, le=limits.ADJUSTMENT_DELTA_MAX)]
    reason: Text


class LevelRead(msgspec.Struct):
    """An inventory level."""

    sku: str
    on_hand: int
    reserved: int
    available: int
    updated_at: datetime

    @classmethod
    def of(cls, level: InventoryLevel) -> LevelRead:
        """From the domain's level."""
        return cls(level.sku, level.on_hand, level.reserved, level.available, level.updated_at)


class LineCreate(msgspec.Struct, forbid_unknown_fields=True):
    """One order line."""

    sku: Sku
    quantity: Annotated[int, msgspec.Meta(ge=limits.LINE_QUANTITY_MIN, le=limits.LINE_QUANTITY_MAX)]
    unit_price: UnitPrice


class OrderCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/orders``."""

    lines: Annotated[list[LineCreate], msgspec.Meta(min_length=limits.LINES_MIN, max_length=limits.LINES_MAX)]
    currency: Currency
    customer_ref: Text | None = None
    hold_seconds: Annotated[int, msgspec.Meta(ge=limits.HOLD_SECONDS_MIN, le=limits.HOLD_SECONDS_MAX)] = (
        limits.HOLD_SECONDS_DEFAULT
    )


class LineRead(msgspec.Struct):
    """One order line as stored."""

    sku: str
    quantity: int
    unit_price: Money


class OrderRead(msgspec.Struct):
    """An order."""

    id: uuid.UUID
    status: str
    currency: str
    customer_ref: str | None
    lines: list[LineRead]
    total: Money
    amount_captured: Money
    amount_refunded: Money
    payment_ids: list[uuid.UUID]
    hold_expires_at: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: OrderView) -> OrderRead:
        """From the domain's order view."""
        return cls(
            id=view.id,
            status=str(view.status),
            currency=view.currency,
            customer_ref=view.customer_ref,
            lines=[
                LineRead(line.sku, line.quantity, Money(line.unit_price.amount, line.unit_price.currency))
                for line in view.lines
            ],
            total=Money(view.total.amount, view.total.currency),
            amount_captured=Money(view.amount_captured.amount, view.currency),
            amount_refunded=Money(view.amount_refunded.amount, view.currency),
            payment_ids=list(view.payment_ids),
            hold_expires_at=view.hold_expires_at,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class LevelPage(msgspec.Struct):
    """A page of inventory levels."""

    data: list[LevelRead]
    next_cursor: str | None


class OrderPage(msgspec.Struct):
    """A page of orders."""

    data: list[OrderRead]
    next_cursor: str | None


class EventRead(msgspec.Struct):
    """One stored event (the audit event shape; the hash chain fields come from the audit chain)."""

    position: int
    stream_id: uuid.UUID
    stream_type: str
    version: int
    type: str
    occurred_at: str
    data: dict[str, object]
    metadata: dict[str, str]
    hash: str | None = None
    prev_hash: str | None = None


class EventPage(msgspec.Struct):
    """A page of events."""

    data: list[EventRead]
    next_cursor: str | None


class AuditEventPage(msgspec.Struct):
    """A page of the merchant's chained events; ``next_cursor`` is the last position (pass it as ``after``)."""

    data: list[EventRead]
    next_cursor: str | None


class DigestRead(msgspec.Struct):
    """A signed digest: Ed25519 over the UTF-8 bytes of ``"{merchant_id}:{position}:{hash}"`` (hex values)."""

    merchant_id: uuid.UUID
    position: int
    hash: str
    signed_at: str
    signature: str
    public_key: str


class MismatchRead(msgspec.Struct):
    """Where the chain first fails, and why."""

    position: int
    reason: str


class VerificationRead(msgspec.Struct):
    """What one verification call checked and found."""

    ok: bool
    events_checked: int
    first_mismatch: MismatchRead | None


# --- Payments, reconciliation and webhooks ----------------------------------------------


class PaymentRead(msgspec.Struct):
    """A payment; amounts are integer minor units of ``currency``."""

    id: uuid.UUID
    order_id: uuid.UUID | None
    gateway: str
    gateway_ref: str
    status: str
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    currency: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: PaymentView) -> PaymentRead:
        """From the domain's payment view (a payment replayed from its events)."""
        return cls(
            id=view.id,
            order_id=view.order_id,
            gateway=view.gateway,
            gateway_ref=view.gateway_ref,
            status=str(view.status),
            amount_authorized=view.amount_authorized,
            amount_captured=view.amount_captured,
            amount_refunded=view.amount_refunded,
            currency=view.currency,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class PaymentPage(msgspec.Struct):
    """A page of payments."""

    data: list[PaymentRead]
    next_cursor: str | None


class IssueRead(msgspec.Struct, omit_defaults=True):
    """Something to reconcile; ``order_id`` / ``payment_id`` are left out when unknown."""

    kind: str
    detail: str
    order_id: uuid.UUID | None = None
    payment_id: uuid.UUID | None = None


class IssuePage(msgspec.Struct):
    """A page of reconciliation issues."""

    data: list[IssueRead]
    next_cursor: str | None


class WebhookAck(msgspec.Struct):
    """The answer to a webhook delivery: ``accepted``, ``duplicate`` or ``ignored``."""

    status: str
