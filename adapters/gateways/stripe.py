"""Stripe events → gateway facts.

Decisions where the contract is silent:

- ``metadata.order_id`` is free text set by the merchant: when it is absent or not a
  UUID the payment is recorded with ``order_id=None`` (reconciliation reports it as a
  payment without a known order) instead of rejecting the event, which Stripe would
  retry for days without the fact ever being recorded.
- ``charge.refunded`` carries the charge's refund list so far; one fact is produced per
  distinct refund id (the payment remembers refund ids, so re-deliveries of earlier
  refunds are no-ops). Only a ``succeeded`` refund counts (one without a ``status``, in
  payloads older than refund statuses, too); a ``pending`` one waits for a later event;
  a ``failed`` or ``canceled`` one is reversed, in case it was counted before. A
  conflicting duplicate (same id, different amount) is malformed. A charge with no
  refund listed, or not made through a PaymentIntent (``payment_intent: null``), yields
  nothing and is ignored.
- Recent Stripe API versions leave the list out of the charge: then its
  ``amount_refunded`` is the fact, a running total keyed by the charge id.
- A refund that fails later is reported on the refund itself (``charge.refund.updated``,
  ``refund.updated``, ``refund.failed``): a ``failed`` or ``canceled`` refund is
  reversed (naming its charge, whose total may have counted it). Refund objects in any
  other state are ignored: ``charge.refunded`` counts refunds, so nothing counts twice.
- ``payment_intent.payment_failed`` facts carry amount 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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
    id: Ref | None = None
    payment_intent: Ref | None
    refunds: _StripeRefundList | None = None
    amount_refunded: Amount | None = None


class _RefundObject(_StripeObject, kw_only=True):
    id: Ref
    amount: Amount
    status: str | None = None
    payment_intent: Ref | None = None
    charge: Ref | None = None


class _Dispute(_StripeObject, kw_only=True):
    payment_intent: Ref | None
    amount: Amount


_STRIPE_ENVELOPE = msgspec.json.Decoder(_StripeEnvelope)
_STRIPE_AUTHORIZED = msgspec.json.Decoder(_StripeEvent[_PaymentIntentAuthorized])
_STRIPE_SUCCEEDED = msgspec.json.Decoder(_StripeEvent[_PaymentIntentSucceeded])
_STRIPE_FAILED = msgspec.json.Decoder(_StripeEvent[_PaymentIntent])
_STRIPE_REFUNDED = msgspec.json.Decoder(_StripeEvent[_Charge])
_STRIPE_DISPUTED = msgspec.json.Decoder(_StripeEvent[_Dispute])
_STRIPE_REFUND_OBJECT = msgspec.json.Decoder(_StripeEvent[_RefundObject])

_REFUND_COUNTS = frozenset({"succeeded", None})
_LISTED_KINDS = (GatewayEventKind.REFUNDED, GatewayEventKind.REFUND_REVERSED)
_REFUND_REVERSED = frozenset({"failed", "canceled"})


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
    if charge.refunds is None:
        return _refunded_total(event.id, event.type, charge, charge.payment_intent)
    listed: dict[GatewayEventKind, dict[str, int]] = {
        GatewayEventKind.REFUNDED: {},
        GatewayEventKind.REFUND_REVERSED: {},
    }
    for refund in charge.refunds.data:
        if refund.status in _REFUND_COUNTS:
            amounts = listed[GatewayEventKind.REFUNDED]
        elif refund.status in _REFUND_REVERSED:
            amounts = listed[GatewayEventKind.REFUND_REVERSED]
        else:
            continue  # pending, requires_action: counted once it succeeds
        if amounts.setdefault(refund.id, refund.amount) != refund.amount:
            raise MalformedPayloadError(f"refund {refund.id!r} is listed twice with different amounts")
    facts = [
        _stripe_fact(kind, event.id, charge, charge.payment_intent, amount, refund_id=refund_id)
        for kind, amounts in listed.items()
        for refund_id, amount in amounts.items()
    ]
    return facts or Ignored(event.type, "no refund listed")


def _refunded_total(event_id: str, event_type: str, charge: _Charge, payment_intent: str) -> ParseResult:
    """The charge's ``amount_refunded`` as one fact: a running total keyed by the charge."""
    if charge.amount_refunded is None:
        detail = "Object missing required field `amount_refunded` (and `refunds` is absent) - at `$.data.object`"
        raise MalformedPayloadError(detail)
    if charge.id is None:
        raise MalformedPayloadError("Object missing required field `id` (a charge without refunds listed)")
    if charge.amount_refunded == 0:
        return Ignored(event_type, "nothing refunded")
    kind = GatewayEventKind.REFUNDED
    return [
        _stripe_fact(
            kind, event_id, charge, payment_intent, charge.amount_refunded, refund_id=charge.id, total_ref=charge.id
        )
    ]


def _parse_refund_object(raw_body: bytes) -> ParseResult:
    event = decode(_STRIPE_REFUND_OBJECT, raw_body)
    refund = event.data.object
    if refund.status not in _REFUND_REVERSED:
        return Ignored(event.type, "refunds are counted from charge.refunded")
    if refund.payment_intent is None:
        return Ignored(event.type, "refund of a charge without a PaymentIntent")
    kind = GatewayEventKind.REFUND_REVERSED
    fact = _stripe_fact(kind, event.id, refund, refund.payment_intent, refund.amount, refund_id=refund.id)
    return [replace(fact, order_id=None, total_ref=refund.charge)]  # refund metadata is not the order's


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
    "charge.refund.updated": _parse_refund_object,
    "refund.updated": _parse_refund_object,
    "refund.failed": _parse_refund_object,
}


def _stripe_fact(
    kind: GatewayEventKind,
    event_id: str,
    obj: _StripeObject,
    gateway_ref: str,
    amount: int,
    *,
    refund_id: str | None = None,
    total_ref: str | None = None,
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
        total_ref=total_ref,
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
