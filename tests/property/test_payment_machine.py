"""Payments converge: any order and duplication of a payment's facts gives one state.

All but one thing: the payment belongs to the first order a fact named (the link has
effects, so it is never moved); that is checked against the order of delivery instead.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.application import Daybook
from domain.context import CommandContext
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.payments import Payment
from tests.property.domain_support import round_trip

CONTEXT = CommandContext(actor="gateway:stripe", request_id="payments")
MERCHANT = UUID("00000000-0000-4000-8000-000000000001")
ORDERS = [
    UUID("00000000-0000-4000-8000-0000000000aa"),
    UUID("00000000-0000-4000-8000-0000000000bb"),
]
MAPPER = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper


@st.composite
def gateway_facts(draw: st.DrawFn) -> GatewayEvent:
    kind = draw(st.sampled_from(list(GatewayEventKind)))
    names_a_refund = kind in {GatewayEventKind.REFUNDED, GatewayEventKind.REFUND_REVERSED}
    refund_id = draw(st.sampled_from(["re_1", "re_2", "re_3"])) if names_a_refund else None
    minimum = 1 if kind is GatewayEventKind.REFUNDED else 0
    return GatewayEvent(
        kind=kind,
        gateway="stripe",
        gateway_ref="pi_1",
        event_id=f"evt_{draw(st.integers(0, 10_000))}",
        order_id=draw(st.sampled_from([ORDERS[0], ORDERS[0], ORDERS[0], ORDERS[1], None])),
        amount=draw(st.sampled_from([minimum, 100, 250, 500, 1000])),
        currency=draw(st.sampled_from(["EUR", "EUR", "EUR", "USD"])),
        refund_id=refund_id,
    )


def payment_from(facts: list[GatewayEvent]) -> Payment:
    payment = Payment.open(MERCHANT, "stripe", "pi_1", CONTEXT)
    for fact in facts:
        payment.record(fact, CONTEXT)
    return payment


def first_order_named(facts: list[GatewayEvent]) -> UUID | None:
    return next((fact.order_id for fact in facts if fact.order_id is not None), None)


def converged_state(payment: Payment) -> tuple[Any, ...]:
    view = payment.view()
    return (
        view.status,
        view.amount_authorized,
        view.amount_captured,
        view.amount_refunded,
        view.currency,
        view.refunds,
        view.anomalies,
        payment.refund_amounts,
        payment.reversed_refunds,
        payment.currencies,
        payment.order_ids,
    )


class PaymentMachine(RuleBasedStateMachine):
    """Delivers facts from a pool, in any order, any number of times."""

    def __init__(self) -> None:
        super().__init__()
        self.payment = Payment.open(MERCHANT, "stripe", "pi_1", CONTEXT)
        self.events: list[Any] = list(self.payment.collect_events())
        self.pool: list[GatewayEvent] = []
        self.delivered: set[GatewayEvent] = set()
        self.delivery_order: list[GatewayEvent] = []

    @initialize(pool=st.lists(gateway_facts(), min_size=1, max_size=8))
    def draw_pool(self, pool: list[GatewayEvent]) -> None:
        self.pool = pool

    @rule(index=st.integers(0, 7))
    def deliver(self, index: int) -> None:
        fact = self.pool[index % len(self.pool)]
        version = self.payment.version
        changed = self.payment.record(fact, CONTEXT)
        if fact in self.delivered:
            assert changed is False, "a duplicate delivery recorded something"
        assert self.payment.version == version + int(changed)
        self.delivered.add(fact)
        self.delivery_order.append(fact)
        self.events.extend(self.payment.collect_events())

    @invariant()
    def the_payment_keeps_the_first_order_named(self) -> None:
        assert self.payment.order_id == first_order_named(self.delivery_order)

    @invariant()
    def amounts_stay_within_bounds(self) -> None:
        payment = self.payment
        assert 0 <= payment.amount_refunded <= payment.amount_captured
        if payment.authorized_max is not None and payment.amount_captured > payment.authorized_max:
            assert any(a.kind == "capture_exceeds_authorization" for a in payment.anomalies)
        # Each refund id counts once, and not at all once reversed (issue 11, item 12).
        reversed_ids = {fact.refund_id for fact in self.delivered if fact.kind is GatewayEventKind.REFUND_REVERSED}
        distinct_refunds: dict[str, int] = {}
        for fact in self.delivered:
            if fact.kind is GatewayEventKind.REFUNDED and fact.refund_id not in reversed_ids:
                assert fact.refund_id is not None
                distinct_refunds[fact.refund_id] = max(fact.amount, distinct_refunds.get(fact.refund_id, 0))
        assert payment.refunds == distinct_refunds, "a refund id was counted more than once"
        assert payment.amount_refunded == min(sum(distinct_refunds.values()), payment.amount_captured)

    @invariant()
    def the_view_says_what_the_payment_says(self) -> None:
        payment, view = self.payment, self.payment.view()
        assert (view.status, view.amount_refunded, view.refunds, view.anomalies) == (
            payment.status,
            payment.amount_refunded,
            payment.refunds,
            payment.anomalies,
        )

    def teardown(self) -> None:
        if not self.delivered:
            return
        distinct = sorted(self.delivered, key=repr)
        expected = converged_state(self.payment)
        for facts in (distinct, distinct[::-1], distinct + distinct):
            replayed = payment_from(facts)
            assert converged_state(replayed) == expected
            assert replayed.order_id == first_order_named(facts)
        assert round_trip(MAPPER, self.events) == self.payment


PaymentMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
TestPaymentMachine = PaymentMachine.TestCase
