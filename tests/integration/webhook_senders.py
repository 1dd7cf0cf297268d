"""What a gateway sends: event bodies and signatures made with the real implementations.

Standard Webhooks deliveries are signed by the ``standardwebhooks`` package itself;
Stripe deliveries by :func:`api.webhooks.signatures.sign_stripe`, which the unit tests
check against the ``stripe`` package's own verifier.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from standardwebhooks import Webhook

from api.webhooks.signatures import sign_stripe


@dataclass(frozen=True)
class Delivery:
    """One HTTP delivery: where, what, and its headers."""

    path: str
    body: bytes
    headers: dict[str, str]
    event_id: str


def stripe_body(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> tuple[str, bytes]:
    """A Stripe event body and its id."""
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    body = {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()), "data": {"object": obj}}
    return event_id, json.dumps(body).encode()


def standard_body(event_type: str, data: dict[str, Any]) -> bytes:
    """A Standard Webhooks body in Daybook's schema."""
    return json.dumps({"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}).encode()


def stripe_headers(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The ``Stripe-Signature`` header for ``body``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {"Stripe-Signature": sign_stripe(body, secret, stamp), "Content-Type": "application/json"}


def standard_headers(body: bytes, secret: str, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers, signed by the ``standardwebhooks`` package."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def stripe_delivery(merchant: dict[str, Any], event_type: str, obj: dict[str, Any]) -> Delivery:
    """A signed Stripe delivery for ``merchant``."""
    event_id, body = stripe_body(event_type, obj)
    headers = stripe_headers(body, merchant["webhook_secrets"]["stripe"])
    return Delivery(f"/v1/webhooks/{merchant['merchant_id']}/stripe", body, headers, event_id)


def standard_delivery(merchant: dict[str, Any], event_type: str, data: dict[str, Any]) -> Delivery:
    """A signed Standard Webhooks delivery for ``merchant``."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = standard_body(event_type, data)
    headers = standard_headers(body, merchant["webhook_secrets"]["standard"], msg_id)
    return Delivery(f"/v1/webhooks/{merchant['merchant_id']}/standard", body, headers, msg_id)


def inbox_rows(database_url: str, merchant_id: str) -> int:
    """How many deliveries the merchant's inbox holds."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM webhook_inbox WHERE merchant_id = %s", (merchant_id,)).fetchone()
    assert row is not None
    return int(row[0])


def inbox_states(database_url: str, merchant_id: str) -> dict[str, int]:
    """Row counts of the merchant's inbox by state."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM webhook_inbox WHERE merchant_id = %s GROUP BY state", (merchant_id,)
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


# --- Stories: the webhooks one payment produces over its life ---------------------------

VARIANTS = 5


class PaymentStory:
    """Signed deliveries about one payment of one order, in the order the gateway sent them.

    Variant (``index % VARIANTS``), four events each:
    0. authorized, captured, refund A, refunds A+B (fully refunded)
    1. authorized, captured, refund A, disputed
    2. failed, authorized, captured, refund A
    3. authorized, captured half, captured in full, refund A
    4. authorized, captured, refund A, refund A redelivered under a new event id
    """

    def __init__(self, merchant: dict[str, Any], gateway: str, order_id: str, total: int, index: int) -> None:
        self.merchant = merchant
        self.gateway = gateway
        self.order_id = order_id
        self.total = total
        self.gateway_ref = f"pi_{uuid.uuid4().hex[:20]}" if gateway == "stripe" else f"pay_{uuid.uuid4().hex[:20]}"
        self.refund_a = (f"re_{uuid.uuid4().hex[:12]}", max(1, total // 3))
        self.refund_b = (f"re_{uuid.uuid4().hex[:12]}", total - self.refund_a[1])
        variant = index % VARIANTS
        steps: list[tuple[str, Any]] = {
            0: [("authorized", total), ("captured", total), ("refunded", [self.refund_a]),
                ("refunded", [self.refund_a, self.refund_b])],
            1: [("authorized", total), ("captured", total), ("refunded", [self.refund_a]), ("disputed", total)],
            2: [("failed", 0), ("authorized", total), ("captured", total), ("refunded", [self.refund_a])],
            3: [("authorized", total), ("captured", total // 2), ("captured", total), ("refunded", [self.refund_a])],
            4: [("authorized", total), ("captured", total), ("refunded", [self.refund_a]),
                ("refunded", [self.refund_a])],
        }[variant]  # fmt: skip
        self.deliveries = [self._delivery(kind, amount) for kind, amount in steps]
        self.refund_ids = {refund_id for kind, amount in steps if kind == "refunded" for refund_id, _ in amount}

    def _delivery(self, kind: str, amount: Any) -> Delivery:
        if self.gateway == "stripe":
            return self._stripe(kind, amount)
        return self._standard(kind, amount)

    def _stripe(self, kind: str, amount: Any) -> Delivery:
        metadata = {"order_id": self.order_id}
        intent = {"id": self.gateway_ref, "object": "payment_intent", "currency": "eur", "metadata": metadata}
        if kind == "authorized":
            return stripe_delivery(
                self.merchant, "payment_intent.amount_capturable_updated", {**intent, "amount_capturable": amount}
            )
        if kind == "captured":
            return stripe_delivery(self.merchant, "payment_intent.succeeded", {**intent, "amount_received": amount})
        if kind == "failed":
            return stripe_delivery(self.merchant, "payment_intent.payment_failed", intent)
        charge = {"id": f"ch_{self.gateway_ref[3:]}", "object": "charge", "payment_intent": self.gateway_ref}
        charge |= {"currency": "eur", "metadata": metadata}
        if kind == "refunded":
            refunds = [{"id": refund_id, "amount": value, "status": "succeeded"} for refund_id, value in amount]
            return stripe_delivery(self.merchant, "charge.refunded", {**charge, "refunds": {"data": refunds}})
        dispute = {"id": f"dp_{uuid.uuid4().hex[:12]}", "payment_intent": self.gateway_ref, "currency": "eur"}
        return stripe_delivery(self.merchant, "charge.dispute.created", {**dispute, "amount": amount})

    def _standard(self, kind: str, amount: Any) -> Delivery:
        data: dict[str, Any] = {"gateway_ref": self.gateway_ref, "order_id": self.order_id, "currency": "EUR"}
        if kind == "refunded":
            refund_id, value = amount[-1]
            return standard_delivery(
                self.merchant, "payment.refunded", {**data, "amount": value, "refund_id": refund_id}
            )
        if kind != "failed":
            data["amount"] = amount
        return standard_delivery(self.merchant, f"payment.{kind}", data)
