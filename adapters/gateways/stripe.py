"""Stripe events → gateway facts.

Decisions where the contract is silent:

- ``metadata.order_id`` is free text set by the merchant: when it is absent or not a
  UUID the payment is recorded with ``order_id=None`` (reconciliation reports it as a
  payment without a known order) instead of rejecting the event, which Stripe would
  retry for days without the fact ever being recorded.
- ``charge.refunded`` carries the charge's refund list so far; one fact is produced per
  distinct refund id (the payment remembers refund ids, so re-deliveries of earlier
  refunds are no-ops). Refunds whose ``status`` is ``failed`` or ``canceled`` moved no
  money and are skipped. A conflicting duplicate (same id, different amount) is
  malformed. A charge with no refund listed, or not made through a PaymentIntent
  (``payment_intent: null``), yields nothing and is ignored.
- ``payment_intent.payment_failed`` facts carry amount 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar
from uuid import UUID

import msgspec

from adapters.gateways.wire import Amount, Currency, Ignored, MalformedPayloadError, ParseResult, Ref, decode
from domain.gateway import GatewayEvent, GatewayEventKind

T = TypeVar("T")


class _StripeEnvelope(msgspec.Struct):
    id: Ref
    type: str


class _StripeData(msgspec.Struct, Generic[T]):
    object: T


class _StripeEvent(msgspec.Struct, Generic[T]):
    id: Ref
    type: str
    data: _StripeData[T]


class _StripeMetadata(msgspec.Struct):
    order_id: str | None = None


class _StripeObject(msgspec.Struct, kw_only=True):
    currency: Currency
    metadata: _StripeMetadata | None = None


class _PaymentIntent(_StripeObject, kw_only=True):
    id: Ref


class _PaymentIntentAuthorized(_PaymentIntent, kw_only=True):
    amount_capturable: Amount


class _PaymentIntentSucceeded(_PaymentIntent, kw_only=True):
    amount_received: Amount


class _StripeRefund(msgspec.Struct):
    id: Ref
    amount: Amount
    status: str | None = None


class _StripeRefundList(msgspec.Struct):
    data: list[_StripeRefund]


class _Charge(_StripeObject, kw_only=True):
    payment_intent: Ref | None
    refunds: _StripeRefundList


class _Dispute(_StripeObject, kw_only=True):
    payment_intent: Ref | None
    amount: Amount


_STRIPE_ENVELOPE = msgspec.json.Decoder(_StripeEnvelope)
_STRIPE_AUTHORIZED = msgspec.json.Decoder(_StripeEvent[_PaymentIntentAuthorized])
_STRIPE_SUCCEEDED = msgspec.json.Decoder(_StripeEvent[_PaymentIntentSucceeded])
_STRIPE_FAILED = msgspec.json.Decoder(_StripeEvent[_PaymentIntent])
_STRIPE_REFUNDED = msgspec.json.Decoder(_StripeEvent[_Charge])
_STRIPE_DISPUTED = msgspec.json.Decoder(_StripeEvent[_Dispute])

_REFUND_STATUSES_WITHOUT_MONEY = frozenset({"failed", "canceled"})


def parse(raw_body: bytes) -> ParseResult:
    """The payment facts in a Stripe event body, or :class:`Ignored`.

    Raises:
        MalformedPayloadError: not JSON, or a field Daybook needs is missing or invalid.
    """
    event_type = decode(_STRIPE_ENVELOPE, raw_body).type
    parse = _STRIPE_PARSERS.get(event_type)
    if parse is None:
        return Ignored(event_type, "event type not handled")
    return parse(raw_body)


def _parse_authorized(raw_body: bytes) -> ParseResult:
    event = decode(_STRIPE_AUTHORIZED, raw_body)
    intent = event.data.object
    kind = GatewayEventKind.AUTHORIZED
    return [_stripe_fact(kind, event.id, intent, intent.id, intent.amount_capturable)]


def _parse_succeeded(raw_body: bytes) -> ParseResult:
    event = decode(_STRIPE_SUCCEEDED, raw_body)
    intent = event.data.object
    kind = GatewayEventKind.CAPTURED
    return [_stripe_fact(kind, event.id, intent, intent.id, intent.amount_received)]


def _parse_failed(raw_body: bytes) -> ParseResult:
    event = decode(_STRIPE_FAILED, raw_body)
    intent = event.data.object
    return [_stripe_fact(GatewayEventKind.FAILED, event.id, intent, intent.id, 0)]


def _parse_refunded(raw_body: bytes) -> ParseResult:
    event = decode(_STRIPE_REFUNDED, raw_body)
    charge = event.data.object
    if charge.payment_intent is None:
        return Ignored(event.type, "charge without a PaymentIntent")
    amounts: dict[str, int] = {}
    for refund in charge.refunds.data:
        if refund.status in _REFUND_STATUSES_WITHOUT_MONEY:
            continue
        if amounts.setdefault(refund.id, refund.amount) != refund.amount:
            raise MalformedPayloadError(f"refund {refund.id!r} is listed twice with different amounts")
    if not amounts:
        return Ignored(event.type, "no refund listed")
    kind = GatewayEventKind.REFUNDED
    return [
        _stripe_fact(kind, event.id, charge, charge.payment_intent, amount, refund_id=refund_id)
        for refund_id, amount in amounts.items()
    ]


def _parse_disputed(raw_body: bytes) -> ParseResult:
    event = decode(_STRIPE_DISPUTED, raw_body)
    dispute = event.data.object
    if dispute.payment_intent is None:
        return Ignored(event.type, "dispute of a charge without a PaymentIntent")
    kind = GatewayEventKind.DISPUTED
    return [_stripe_fact(kind, event.id, dispute, dispute.payment_intent, dispute.amount)]


_STRIPE_PARSERS: dict[str, Callable[[bytes], ParseResult]] = {
    "payment_intent.amount_capturable_updated": _parse_authorized,
    "payment_intent.succeeded": _parse_succeeded,
    "payment_intent.payment_failed": _parse_failed,
    "charge.refunded": _parse_refunded,
    "charge.dispute.created": _parse_disputed,
}


def _stripe_fact(
    kind: GatewayEventKind,
    event_id: str,
    obj: _StripeObject,
    gateway_ref: str,
    amount: int,
    *,
    refund_id: str | None = None,
) -> GatewayEvent:
    raw_order_id = obj.metadata.order_id if obj.metadata is not None else None
    return GatewayEvent(
        kind=kind,
        gateway="stripe",
        gateway_ref=gateway_ref,
        event_id=event_id,
        order_id=_uuid_or_none(raw_order_id),
        amount=amount,
        currency=obj.currency.upper(),
        refund_id=refund_id,
    )


def _uuid_or_none(value: str | None) -> UUID | None:
    if value is None:
        return None
    try:
        return msgspec.convert(value, UUID)
    except msgspec.ValidationError:
        return None


def event_id(raw_body: bytes) -> str:
    """The event's ``id``: the deduplication key of a Stripe delivery.

    Raises:
        MalformedPayloadError: the id is missing or invalid.
    """
    return decode(_STRIPE_ENVELOPE, raw_body).id
