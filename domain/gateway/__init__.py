"""Facts reported by payment gateways, normalised from any gateway's webhook format."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from uuid import UUID, uuid5

PAYMENT_NAMESPACE = UUID("6f1c8a52-2b1e-4b8e-9a57-3d0c1f1e2a10")
PAYMENT_IDS_CACHED_MAX = 16_384
"""Payment ids remembered (a few facts of one payment arrive close together)."""


class GatewayEventKind(StrEnum):
    """What a gateway says happened to a payment."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    REFUNDED = "refunded"
    REFUND_REVERSED = "refund_reversed"
    DISPUTED = "disputed"


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """One fact about one payment, as a gateway reported it.

    Attributes:
        kind: what happened.
        gateway: ``"stripe"`` or ``"standard"``.
        gateway_ref: the gateway's payment reference (Stripe PaymentIntent id).
        event_id: the gateway's id for the webhook delivery that carried this fact.
        order_id: the merchant's order the payment is for, when the gateway said so.
        amount: minor units. Authorized: amount authorized (capturable); captured: total
            amount received; refunded: this refund's amount (or, for a total, all refunds
            of ``total_ref`` so far); refund reversed: the failed refund's amount;
            disputed: amount disputed; failed: 0.
        currency: ISO 4217, upper case.
        refund_id: the gateway's refund id (refunds and reversals only). A refunds total
            is keyed by what it totals: ``refund_id == total_ref``.
        total_ref: a gateway that reports refunds as a running total (Stripe's charge
            ``amount_refunded``, without the list of refunds) names what it totals (the
            charge): on a refund, it marks the fact as that total; on a reversal, the
            total that counted the failed refund.
    """

    kind: GatewayEventKind
    gateway: str
    gateway_ref: str
    event_id: str
    order_id: UUID | None
    amount: int
    currency: str
    refund_id: str | None = None
    total_ref: str | None = None


@lru_cache(maxsize=PAYMENT_IDS_CACHED_MAX)
def payment_id(merchant_id: UUID, gateway: str, gateway_ref: str) -> UUID:
    """The payment's id: one payment per (merchant, gateway, gateway reference).

    Remembered: a fact asks for it when it is prefetched, run and opened, and ``uuid5``
    was 8 % of the workers' committer (py-spy ``--gil`` under webhook load).
    """
    return uuid5(PAYMENT_NAMESPACE, f"{merchant_id}:{gateway}:{gateway_ref}")
