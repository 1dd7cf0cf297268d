"""Standard Webhooks bodies (Daybook's own schema) → gateway facts.

The body follows Daybook's schema, so a non-UUID ``order_id`` is malformed. The
``amount`` is optional for ``payment.failed`` only (its fact carries 0); a refund needs
its ``refund_id``. The event id is the delivery's ``webhook-id`` header, given by the
caller (the edge reads it, the inbox stores it).
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from adapters.gateways.wire import Amount, Currency, Ignored, MalformedPayloadError, ParseResult, Ref, decode
from domain import limits
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.validation import has_control_characters


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


def parse(raw_body: bytes, webhook_id: str | None) -> ParseResult:
    """The payment fact in a Standard Webhooks body, or :class:`Ignored`.

    Args:
        raw_body: the verified body.
        webhook_id: the delivery's ``webhook-id`` header (the fact's ``event_id``).

    Raises:
        MalformedPayloadError: not JSON, a needed field is missing or invalid, or
            ``webhook_id`` is missing, too long or holds control characters.
    """
    event_id = checked_event_id(webhook_id)
    event_type = decode(_STANDARD_ENVELOPE, raw_body).type
    kind = _STANDARD_KINDS.get(event_type)
    if kind is None:
        return Ignored(event_type, "event type not handled")
    data = decode(_STANDARD_EVENT, raw_body).data
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


def checked_event_id(webhook_id: str | None) -> str:
    """The ``webhook-id`` when it can be an event id.

    Raises:
        MalformedPayloadError: missing, longer than ``GATEWAY_ID_LENGTH_MAX``, or with
            control characters.
    """
    if not webhook_id:
        raise MalformedPayloadError("missing webhook-id header")
    if len(webhook_id) > limits.GATEWAY_ID_LENGTH_MAX:
        raise MalformedPayloadError(f"webhook-id longer than {limits.GATEWAY_ID_LENGTH_MAX} characters")
    if has_control_characters(webhook_id):
        raise MalformedPayloadError("webhook-id contains control characters")
    return webhook_id
