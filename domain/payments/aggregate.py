"""Payments: the facts a gateway reported about one payment, kept so that they converge.

Gateways deliver webhooks late, twice, and out of order (a capture before its
authorization, a refund before the capture). A :class:`Payment` therefore stores each
*distinct* fact once — a fact that adds nothing new triggers no event — and derives
everything else from the facts it holds, so that the final state is a function of the
set of facts received, whatever their order or duplication:

- ``amount_authorized``: the largest authorization reported; without any authorization,
  the captured amount (a capture implies an authorization of at least that much).
- ``amount_captured``: the largest captured total reported (gateways report totals).
- refunds are keyed by refund id; a refund id counts once (its largest reported amount;
  two different amounts for one id are an anomaly). ``amount_refunded`` is the sum of
  the refunds, counted only up to ``amount_captured``; any excess is an anomaly.
- a refund that failed after it was reported is reversed: a reversal of its id takes it
  out of the sum for good, whichever of the two arrived first. A gateway that reports a
  running total of refunds instead of each refund (Stripe's ``amount_refunded`` without
  the list) is keyed by what it totals and counted as its largest total reported; a
  reversal naming that total takes the failed refund's amount off it.
- status precedence: ``disputed`` > ``refunded`` > ``partially_refunded`` >
  ``captured`` > ``failed`` > ``authorized``. A dispute overrides everything because
  the money is contested whatever else happened; a capture overrides an earlier or
  later failure report (a retried attempt succeeded).
- a payment whose facts disagree on the currency keeps every fact, uses the alphabetically
  first currency, and reports an anomaly.
- the payment belongs to the first order a fact named, for good: relating it to an order
  has effects (the order is paid, its stock committed), so a later fact naming another
  order is kept and reported (``order_conflict``), never followed. This one derived value
  depends on the order of the facts, not only on their set.

Anomalies that depend on the order (unknown order, currency different from the order's,
overpayment, paid but unfulfillable) are flagged by the command that relates the
payment to its order, once per kind, with :meth:`Payment.flag_anomaly`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain import limits
from domain.context import CommandContext
from domain.errors import InvalidCommandError
from domain.events import DaybookAggregate, DaybookCreated, DaybookEvent
from domain.gateway import GatewayEvent, GatewayEventKind, payment_id
from domain.payments.refunds import counted_refunds, fold_reversal
from domain.payments.values import (
    Anomaly,
    AnomalyKind,
    PaymentStatus,
    PaymentView,
    check_gateway_event,
)
from domain.validation import check_text


class PaymentFact(DaybookEvent):
    """Base of the events recording one gateway fact."""

    event_id: str
    order_id: UUID | None
    amount: int
    currency: str

    def apply(self, aggregate: Payment) -> None:
        aggregate.currencies.add(self.currency)
        if self.order_id is not None:
            aggregate.order_ids.add(self.order_id)
            if aggregate.linked_order_id is None:
                aggregate.linked_order_id = self.order_id


class Payment(DaybookAggregate):
    """One payment of one merchant at one gateway, identified by the gateway reference."""

    class Opened(DaybookCreated):
        """The first fact about this gateway reference arrived."""

        gateway: str
        gateway_ref: str

    class Authorized(PaymentFact):
        """The gateway authorized ``amount`` (capturable)."""

        def apply(self, aggregate: Payment) -> None:
            super().apply(aggregate)
            aggregate.authorized_max = max(self.amount, aggregate.authorized_max or 0)

    class Captured(PaymentFact):
        """The gateway reported ``amount`` received in total."""

        def apply(self, aggregate: Payment) -> None:
            super().apply(aggregate)
            aggregate.captured_max = max(self.amount, aggregate.captured_max or 0)

    class Failed(PaymentFact):
        """The gateway reported a failed attempt."""

        def apply(self, aggregate: Payment) -> None:
            super().apply(aggregate)
            aggregate.failed = True

    class Refunded(PaymentFact):
        """The gateway refunded ``amount`` under ``refund_id``.

        v2 added ``total_ref``: set, the fact is a running total of the refunds of
        ``total_ref`` (then equal to ``refund_id``).
        """

        refund_id: str
        total_ref: str | None = None
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """v1 refunds were each one refund."""
            state["total_ref"] = None

        def apply(self, aggregate: Payment) -> None:
            super().apply(aggregate)
            aggregate.refund_amounts.setdefault(self.refund_id, set()).add(self.amount)
            if self.total_ref is not None:
                aggregate.refund_totals.add(self.refund_id)

    class RefundReversed(PaymentFact):
        """The refund ``refund_id`` of ``amount`` failed: it no longer counts (``total_ref``: see Refunded)."""

        refund_id: str
        total_ref: str | None

        def apply(self, aggregate: Payment) -> None:
            super().apply(aggregate)
            aggregate.reversed_refunds[self.refund_id] = fold_reversal(
                aggregate.reversed_refunds.get(self.refund_id), self.amount, self.total_ref
            )

    class Disputed(PaymentFact):
        """A chargeback of ``amount`` was opened."""

        def apply(self, aggregate: Payment) -> None:
            super().apply(aggregate)
            aggregate.disputed_max = max(self.amount, aggregate.disputed_max or 0)

    class AnomalyFlagged(DaybookEvent):
        """A command relating the payment to its order found something to reconcile."""

        kind: str
        detail: str

        def apply(self, aggregate: Payment) -> None:
            aggregate.flagged[AnomalyKind(self.kind)] = self.detail

    def __init__(self, merchant_id: UUID, gateway: str, gateway_ref: str) -> None:
        self.merchant_id = merchant_id
        self.gateway = gateway
        self.gateway_ref = gateway_ref
        self.authorized_max: int | None = None
        self.captured_max: int | None = None
        self.disputed_max: int | None = None
        self.failed = False
        self.refund_amounts: dict[str, set[int]] = {}
        self.refund_totals: set[str] = set()
        self.reversed_refunds: dict[str, tuple[int, str | None]] = {}
        self.currencies: set[str] = set()
        self.order_ids: set[UUID] = set()
        self.linked_order_id: UUID | None = None
        self.flagged: dict[AnomalyKind, str] = {}

    @classmethod
    def open(cls, merchant_id: UUID, gateway: str, gateway_ref: str, context: CommandContext) -> Payment:
        """Starts the payment's stream; its id is :func:`domain.gateway.payment_id`."""
        check_text("gateway", gateway, required=True, length_max=limits.GATEWAY_ID_LENGTH_MAX)
        check_text("gateway_ref", gateway_ref, required=True, length_max=limits.GATEWAY_ID_LENGTH_MAX)
        return cls._create(
            cls.Opened,
            id=payment_id(merchant_id, gateway, gateway_ref),
            merchant_id=merchant_id,
            metadata=context.metadata(),
            timestamp=context.occurred_at,
            gateway=gateway,
            gateway_ref=gateway_ref,
        )

    def record(self, fact: GatewayEvent, context: CommandContext) -> bool:
        """Records the fact if it adds anything; ``False`` (no event) for a duplicate.

        Raises:
            InvalidCommandError: see :func:`check_gateway_event`, or a fact about
                another gateway reference.
        """
        check_gateway_event(fact)
        if (fact.gateway, fact.gateway_ref) != (self.gateway, self.gateway_ref):
            raise InvalidCommandError("gateway_ref", "fact is about another payment")
        if not self.is_news(fact):
            return False
        if fact.kind is GatewayEventKind.REFUNDED:
            refunds = self.refunds
            refunds[fact.refund_id or ""] = max(fact.amount, refunds.get(fact.refund_id or "", 0))
            if sum(refunds.values()) > limits.AMOUNT_MAX:
                raise InvalidCommandError("amount", f"the payment's refunds would exceed {limits.AMOUNT_MAX}")
        fields: dict[str, Any] = {"event_id": fact.event_id, "order_id": fact.order_id}
        fields |= {"amount": fact.amount, "currency": fact.currency}
        if fact.kind in {GatewayEventKind.REFUNDED, GatewayEventKind.REFUND_REVERSED}:
            fields |= {"refund_id": fact.refund_id, "total_ref": fact.total_ref}
        self._record(_FACT_EVENTS[fact.kind], context, **fields)
        return True

    def is_news(self, fact: GatewayEvent) -> bool:
        """Whether recording ``fact`` would change anything derived from the facts."""
        if fact.currency not in self.currencies:
            return True
        if fact.order_id is not None and fact.order_id not in self.order_ids:
            return True
        kind = fact.kind
        if kind is GatewayEventKind.AUTHORIZED:
            return self.authorized_max is None or fact.amount > self.authorized_max
        if kind is GatewayEventKind.CAPTURED:
            return self.captured_max is None or fact.amount > self.captured_max
        if kind is GatewayEventKind.DISPUTED:
            return self.disputed_max is None or fact.amount > self.disputed_max
        if kind is GatewayEventKind.FAILED:
            return not self.failed
        assert fact.refund_id is not None  # checked by check_gateway_event
        if kind is GatewayEventKind.REFUND_REVERSED:
            known = self.reversed_refunds.get(fact.refund_id)
            return known != fold_reversal(known, fact.amount, fact.total_ref)
        return fact.amount not in self.refund_amounts.get(fact.refund_id, set())

    def flag_anomaly(self, kind: AnomalyKind, detail: str, context: CommandContext) -> bool:
        """Flags an order-related anomaly once per kind; ``False`` if already flagged."""
        if kind in self.flagged:
            return False
        self._record(self.AnomalyFlagged, context, kind=kind.value, detail=detail)
        return True

    @property
    def order_id(self) -> UUID | None:
        """The order the gateway said the payment is for: the first one any fact named."""
        return self.linked_order_id

    @property
    def currency(self) -> str:
        """The currency reported (alphabetically first if the facts disagree).

        ``"XXX"`` (ISO 4217 "no currency") only before the first fact is recorded.
        """
        return min(self.currencies, default="XXX")

    @property
    def amount_captured(self) -> int:
        """The largest captured total reported, 0 before any capture."""
        return self.captured_max or 0

    @property
    def has_capture(self) -> bool:
        """Whether the gateway reported a capture (of any amount, 0 included)."""
        return self.captured_max is not None

    @property
    def amount_authorized(self) -> int:
        """The largest authorization reported, else the captured amount."""
        return self.authorized_max if self.authorized_max is not None else self.amount_captured

    @property
    def refunds(self) -> dict[str, int]:
        """Refund id → refunded amount (each refund id counted once, reversed ones not at all)."""
        return counted_refunds(self.refund_amounts, self.refund_totals, self.reversed_refunds)

    @property
    def refunds_total(self) -> int:
        """All refunds reported, even beyond the captured amount."""
        return sum(self.refunds.values())

    @property
    def amount_refunded(self) -> int:
        """Refunds counted up to the captured amount."""
        return min(self.refunds_total, self.amount_captured)

    @property
    def is_disputed(self) -> bool:
        """Whether a chargeback was reported."""
        return self.disputed_max is not None

    @property
    def status(self) -> PaymentStatus:
        """The status, by the precedence in the module docstring."""
        refunds = self.refunds
        return self._status(bool(refunds), sum(refunds.values()))

    def _status(self, refunded: bool, refunds_total: int) -> PaymentStatus:
        if self.is_disputed:
            return PaymentStatus.DISPUTED
        if refunded:
            if refunds_total >= self.amount_captured:
                return PaymentStatus.REFUNDED
            return PaymentStatus.PARTIALLY_REFUNDED
        if self.captured_max is not None:
            return PaymentStatus.CAPTURED
        if self.failed:
            return PaymentStatus.FAILED
        return PaymentStatus.AUTHORIZED

    @property
    def anomalies(self) -> tuple[Anomaly, ...]:
        """Anomalies derived from the facts, then those flagged by commands, sorted."""
        return self._anomalies(self.refunds_total)

    def _anomalies(self, refunds_total: int) -> tuple[Anomaly, ...]:
        found = [Anomaly(kind, detail) for kind, detail in self.flagged.items()]
        if self.authorized_max is not None and self.amount_captured > self.authorized_max:
            detail = f"captured {self.amount_captured} > authorized {self.authorized_max}"
            found.append(Anomaly(AnomalyKind.CAPTURE_EXCEEDS_AUTHORIZATION, detail))
        if refunds_total > self.amount_captured:
            detail = f"refunds {refunds_total} > captured {self.amount_captured}"
            found.append(Anomaly(AnomalyKind.REFUND_EXCEEDS_CAPTURE, detail))
        for refund_id, amounts in sorted(self.refund_amounts.items()):
            if len(amounts) > 1 and refund_id not in self.refund_totals:  # a total grows: no conflict
                detail = f"refund {refund_id} reported as {sorted(amounts)}"
                found.append(Anomaly(AnomalyKind.REFUND_AMOUNT_CONFLICT, detail))
        if len(self.currencies) > 1:
            detail = f"currencies {sorted(self.currencies)}"
            found.append(Anomaly(AnomalyKind.CURRENCY_CONFLICT, detail))
        if len(self.order_ids) > 1:
            detail = f"orders {sorted(map(str, self.order_ids))}"
            found.append(Anomaly(AnomalyKind.ORDER_CONFLICT, detail))
        return tuple(sorted(found))

    def view(self) -> PaymentView:
        """A frozen view of the current state."""
        refunds = self.refunds  # counted once: status, amounts and anomalies all need it
        refunds_total = sum(refunds.values())
        return PaymentView(
            id=self.id,
            merchant_id=self.merchant_id,
            order_id=self.order_id,
            gateway=self.gateway,
            gateway_ref=self.gateway_ref,
            status=self._status(bool(refunds), refunds_total),
            amount_authorized=self.amount_authorized,
            amount_captured=self.amount_captured,
            amount_refunded=min(refunds_total, self.amount_captured),
            currency=self.currency,
            refunds=refunds,
            anomalies=self._anomalies(refunds_total),
            created_at=self.created_at,
            updated_at=self.updated_at,
            version=self.version,
        )


# Which event records which kind of fact (built once: a dict per fact was 3 % of the
# workers' committer).
_FACT_EVENTS: dict[GatewayEventKind, type[PaymentFact]] = {
    GatewayEventKind.AUTHORIZED: Payment.Authorized,
    GatewayEventKind.CAPTURED: Payment.Captured,
    GatewayEventKind.FAILED: Payment.Failed,
    GatewayEventKind.REFUNDED: Payment.Refunded,
    GatewayEventKind.REFUND_REVERSED: Payment.RefundReversed,
    GatewayEventKind.DISPUTED: Payment.Disputed,
}
