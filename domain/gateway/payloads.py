"""Turn a verified webhook body into :class:`domain.gateway.GatewayEvent` facts.

Gateways add fields over time, so unknown fields are ignored; the fields Daybook needs
are required and typed strictly (no coercion: ``"100"`` or ``100.0`` is not an amount).
Types Daybook does not act on are reported as :class:`Ignored` without looking at their
data, so a new event shape from a gateway never turns into an error.

Decisions where the contract is silent:

- Stripe ``metadata.order_id`` is free text set by the merchant: when it is absent or
  not a UUID the payment is recorded with ``order_id=None`` (reconciliation reports it
  as a payment without a known order) instead of rejecting the event, which Stripe
  would retry for days without the fact ever being recorded. Standard Webhooks bodies
  follow Daybook's own schema, so a non-UUID ``order_id`` there is malformed.
- ``charge.refunded`` carries the charge's refund list so far; one fact is produced per
  distinct refund id (the payment remembers refund ids, so re-deliveries of earlier
  refunds are no-ops). Refunds whose ``status`` is ``failed`` or ``canceled`` moved no
  money and are skipped. A conflicting duplicate (same id, different amount) is
  malformed. A charge with no refund listed, or not made through a PaymentIntent
  (``payment_intent: null``), yields nothing and is ignored.
- ``payment.failed`` / ``payment_intent.payment_failed`` facts carry amount 0; the
  Standard ``amount`` is optional for ``payment.failed`` only.
- Amounts must fit PostgreSQL ``bigint``; ids are 1 to 255 characters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Generic, TypeAlias, TypeVar
from uuid import UUID

import msgspec

from domain.gateway import GatewayEvent, GatewayEventKind

STANDARD_ID_HEADER = "webhook-id"


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` matched case-insensitively (``name`` in lower case)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


AMOUNT_MAX = 2**63 - 1
ID_LENGTH_MAX = 255

Amount = Annotated[int, msgspec.Meta(ge=0, le=AMOUNT_MAX)]
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3, pattern="^[A-Za-z]{3}$")]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_LENGTH_MAX)]

T = TypeVar("T")


class MalformedPayloadError(ValueError):
    """The verified body is not a well-formed event of its gateway.

    Attributes:
        detail: human-readable reason, safe to return to the sender.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event that Daybook does not act on.

    Attributes:
        event_type: the gateway's event type.
        reason: why it carries no payment fact, for logs.
    """

    event_type: str
    reason: str


ParseResult: TypeAlias = list[GatewayEvent] | Ignored


# --- Stripe -------------------------------------------------------------------------


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


def parse_stripe(raw_body: bytes) -> ParseResult:
    """The payment facts in a Stripe event body, or :class:`Ignored`.

    Raises:
        MalformedPayloadError: not JSON, or a field Daybook needs is missing or invalid.
    """
    event_type = _decode(_STRIPE_ENVELOPE, raw_body).type
    parse = _STRIPE_PARSERS.get(event_type)
    if parse is None:
        return Ignored(event_type, "event type not handled")
    return parse(raw_body)


def _parse_authorized(raw_body: bytes) -> ParseResult:
    event = _decode(_STRIPE_AUTHORIZED, raw_body)
    intent = event.data.object
    kind = GatewayEventKind.AUTHORIZED
    return [_stripe_fact(kind, event.id, intent, intent.id, intent.amount_capturable)]


def _parse_succeeded(raw_body: bytes) -> ParseResult:
    event = _decode(_STRIPE_SUCCEEDED, raw_body)
    intent = event.data.object
    kind = GatewayEventKind.CAPTURED
    return [_stripe_fact(kind, event.id, intent, intent.id, intent.amount_received)]


def _parse_failed(raw_body: bytes) -> ParseResult:
    event = _decode(_STRIPE_FAILED, raw_body)
    intent = event.data.object
    return [_stripe_fact(GatewayEventKind.FAILED, event.id, intent, intent.id, 0)]


def _parse_refunded(raw_body: bytes) -> ParseResult:
    event = _decode(_STRIPE_REFUNDED, raw_body)
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
    event = _decode(_STRIPE_DISPUTED, raw_body)
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


# --- Standard Webhooks ----------------------------------------------------------------


class _StandardEnvelope(msgspec.Struct):
    type: str


class _StandardPayment(msgspec.Struct):
    gateway_ref: Ref
    currency: Currency
    amount: Amount | None = None
    order_id: UUID | None = None
    refund_id: Ref | None = None


class _StandardEvent(msgspec.Struct):
    type: str
    data: _StandardPayment


_STANDARD_ENVELOPE = msgspec.json.Decoder(_StandardEnvelope)
_STANDARD_EVENT = msgspec.json.Decoder(_StandardEvent)

_STANDARD_KINDS = {
    "payment.authorized": GatewayEventKind.AUTHORIZED,
    "payment.captured": GatewayEventKind.CAPTURED,
    "payment.failed": GatewayEventKind.FAILED,
    "payment.refunded": GatewayEventKind.REFUNDED,
    "payment.disputed": GatewayEventKind.DISPUTED,
}


def parse_standard(raw_body: bytes, webhook_id: str) -> ParseResult:
    """The payment fact in a Standard Webhooks body, or :class:`Ignored`.

    Args:
        raw_body: the verified body.
        webhook_id: the delivery's ``webhook-id`` header (the fact's ``event_id``).

    Raises:
        MalformedPayloadError: not JSON, a needed field is missing or invalid, or
            ``webhook_id`` is empty or too long.
    """
    event_id = _checked_event_id(webhook_id)
    event_type = _decode(_STANDARD_ENVELOPE, raw_body).type
    kind = _STANDARD_KINDS.get(event_type)
    if kind is None:
        return Ignored(event_type, "event type not handled")
    data = _decode(_STANDARD_EVENT, raw_body).data
    if kind is GatewayEventKind.FAILED:
        amount = 0
    elif data.amount is None:
        raise MalformedPayloadError(f"Object missing required field `amount` - at `$.data` ({event_type})")
    else:
        amount = data.amount
    if kind is GatewayEventKind.REFUNDED and data.refund_id is None:
        raise MalformedPayloadError("Object missing required field `refund_id` - at `$.data` (payment.refunded)")
    return [
        GatewayEvent(
            kind=kind,
            gateway="standard",
            gateway_ref=data.gateway_ref,
            event_id=event_id,
            order_id=data.order_id,
            amount=amount,
            currency=data.currency.upper(),
            refund_id=data.refund_id if kind is GatewayEventKind.REFUNDED else None,
        )
    ]


# --- Either gateway -------------------------------------------------------------------


def parse_event(gateway: str, raw_body: bytes, headers: Mapping[str, str]) -> ParseResult:
    """Parse a verified body of ``gateway`` (``"stripe"`` or ``"standard"``).

    Raises:
        MalformedPayloadError: see :func:`parse_stripe` and :func:`parse_standard`.
        ValueError: unknown ``gateway``.
    """
    if gateway == "stripe":
        return parse_stripe(raw_body)
    if gateway == "standard":
        return parse_standard(raw_body, _standard_webhook_id(headers))
    raise ValueError(f"unknown gateway: {gateway!r}")


def event_id_of(gateway: str, raw_body: bytes, headers: Mapping[str, str]) -> str:
    """The gateway's id for this delivery, the deduplication key.

    Stripe: the body's ``id``; Standard Webhooks: the ``webhook-id`` header (the body
    is not read).

    Raises:
        MalformedPayloadError: the id is missing or invalid.
        ValueError: unknown ``gateway``.
    """
    if gateway == "stripe":
        return _decode(_STRIPE_ENVELOPE, raw_body).id
    if gateway == "standard":
        return _standard_webhook_id(headers)
    raise ValueError(f"unknown gateway: {gateway!r}")


def _standard_webhook_id(headers: Mapping[str, str]) -> str:
    return _checked_event_id(header_value(headers, STANDARD_ID_HEADER))


def _checked_event_id(value: str | None) -> str:
    if not value:
        raise MalformedPayloadError("missing webhook-id header")
    if len(value) > ID_LENGTH_MAX:
        raise MalformedPayloadError(f"webhook-id longer than {ID_LENGTH_MAX} characters")
    return value


def _decode(decoder: msgspec.json.Decoder[T], raw_body: bytes) -> T:
    try:
        return decoder.decode(raw_body)
    except msgspec.ValidationError as error:
        # The message names the field and its JSON path: "... - at `$.data.amount`".
        raise MalformedPayloadError(str(error)) from error
    except msgspec.DecodeError as error:
        raise MalformedPayloadError(f"body is not valid JSON: {error}") from error
