"""The gateways' wire formats: a verified webhook body → :class:`domain.gateway.GatewayEvent` facts.

Pure functions, no I/O: the webhook edge uses them to accept a delivery, the inbox
worker to apply it again from the stored body, so a row is read exactly as it was
accepted. Types Daybook does not act on are reported as :class:`Ignored` without
looking at their data, so a new event shape from a gateway never turns into an error.
"""

from __future__ import annotations

from typing import Final

from adapters.gateways import standard, stripe
from adapters.gateways.wire import Ignored, MalformedPayloadError, ParseResult

GATEWAYS: Final = ("stripe", "standard")

__all__ = ["GATEWAYS", "Ignored", "MalformedPayloadError", "ParseResult", "event_id_of", "parse_delivery"]


def parse_delivery(gateway: str, raw_body: bytes, webhook_id: str | None = None) -> ParseResult:
    """The facts in a verified body of ``gateway`` (``"stripe"`` or ``"standard"``).

    Args:
        gateway: which wire format.
        raw_body: the body as received.
        webhook_id: Standard Webhooks only, the ``webhook-id`` header (the event id).

    Raises:
        MalformedPayloadError: see :func:`adapters.gateways.stripe.parse` and
            :func:`adapters.gateways.standard.parse`.
        ValueError: unknown ``gateway``.
    """
    if gateway == "stripe":
        return stripe.parse(raw_body)
    if gateway == "standard":
        return standard.parse(raw_body, webhook_id)
    raise ValueError(f"unknown gateway: {gateway!r}")


def event_id_of(gateway: str, raw_body: bytes, webhook_id: str | None = None) -> str:
    """The gateway's id for this delivery, the deduplication key.

    Stripe: the body's ``id``; Standard Webhooks: the ``webhook-id`` header (the body
    is not read).

    Raises:
        MalformedPayloadError: the id is missing or invalid.
        ValueError: unknown ``gateway``.
    """
    if gateway == "stripe":
        return stripe.event_id(raw_body)
    if gateway == "standard":
        return standard.checked_event_id(webhook_id)
    raise ValueError(f"unknown gateway: {gateway!r}")
