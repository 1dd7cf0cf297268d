"""Payment: gateway facts recorded once each, converging whatever their order."""

from dataclasses import replace
from itertools import permutations
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.application import Daybook
from domain.commands import ApplyGatewayEvent
from domain.context import CommandContext
from domain.errors import InvalidCommandError
from domain.gateway import GatewayEvent, GatewayEventKind, payment_id
from domain.payments import AnomalyKind, Payment, PaymentStatus

CONTEXT = CommandContext(actor="gateway:stripe", request_id="job-1")
MERCHANT = UUID("00000000-0000-4000-8000-000000000001")
ORDER = UUID("00000000-0000-4000-8000-0000000000aa")
K = GatewayEventKind


def fact(
    kind: GatewayEventKind,
    amount: int = 0,
    *,
    refund_id: str | None = None,
    currency: str = "EUR",
    order_id: UUID | None = ORDER,
    ref: str = "pi_1",
) -> GatewayEvent:
    return GatewayEvent(kind, "stripe", ref, f"evt_{uuid4().hex}", order_id, amount, currency, refund_id)


def payment_of(*facts: GatewayEvent) -> Payment:
    payment = Payment.open(MERCHANT, "stripe", "pi_1", CONTEXT)
    for each in facts:
        payment.record(each, CONTEXT)
    return payment


def state(payment: Payment) -> tuple[object, ...]:
    view = payment.view()
    return (
        view.status,
        view.order_id,
        view.amount_authorized,
        view.amount_captured,
        view.amount_refunded,
        view.currency,
        view.refunds,
        view.anomalies,
    )


def test_payment_id_is_computed_from_merchant_gateway_and_reference():
    payment = Payment.open(MERCHANT, "stripe", "pi_1", CONTEXT)
    assert payment.id == payment_id(MERCHANT, "stripe", "pi_1")
    assert (payment.gateway, payment.gateway_ref) == ("stripe", "pi_1")


def test_authorization_then_capture_gives_a_captured_payment():
    payment = payment_of(fact(K.AUTHORIZED, 1000), fact(K.CAPTURED, 1000))
    view = payment.view()
    assert view.status is PaymentStatus.CAPTURED
    assert (view.amount_authorized, view.amount_captured, view.amount_refunded) == (1000, 1000, 0)
    assert view.order_id == ORDER
    assert view.anomalies == ()


def test_an_authorization_alone_is_authorized():
    assert payment_of(fact(K.AUTHORIZED, 500)).status is PaymentStatus.AUTHORIZED


def test_a_duplicate_fact_records_no_new_event():
    payment = payment_of(fact(K.CAPTURED, 1000))
    version = payment.version
    assert payment.record(fact(K.CAPTURED, 1000), CONTEXT) is False
    assert payment.version == version


def test_every_order_of_arrival_converges_to_the_same_state():
    facts = [
        fact(K.AUTHORIZED, 1000),
        fact(K.CAPTURED, 1000),
        fact(K.REFUNDED, 300, refund_id="re_1"),
        fact(K.REFUNDED, 200, refund_id="re_2"),
    ]
    states = [state(payment_of(*ordering)) for ordering in permutations(facts)]
    only = states[0]
    assert all(each == only for each in states)
    assert only[0] is PaymentStatus.PARTIALLY_REFUNDED
    assert only[4] == 500


def test_a_refund_id_is_applied_once():
    payment = payment_of(
        fact(K.CAPTURED, 1000),
        fact(K.REFUNDED, 300, refund_id="re_1"),
        fact(K.REFUNDED, 300, refund_id="re_1"),
    )
    assert payment.amount_refunded == 300
    assert payment.refunds == {"re_1": 300}


def test_refunds_are_counted_only_up_to_the_captured_amount_and_the_excess_flagged():
    payment = payment_of(
        fact(K.CAPTURED, 500),
        fact(K.REFUNDED, 400, refund_id="re_1"),
        fact(K.REFUNDED, 400, refund_id="re_2"),
    )
    assert payment.amount_refunded == 500
    assert payment.status is PaymentStatus.REFUNDED
    assert [a.kind for a in payment.anomalies] == [AnomalyKind.REFUND_EXCEEDS_CAPTURE]


def test_a_refund_before_its_capture_is_kept_until_the_capture_arrives():
    payment = payment_of(fact(K.REFUNDED, 300, refund_id="re_1"))
    assert (payment.amount_captured, payment.amount_refunded) == (0, 0)
    assert payment.status is PaymentStatus.REFUNDED
    payment.record(fact(K.CAPTURED, 1000), CONTEXT)
    assert (payment.amount_captured, payment.amount_refunded) == (1000, 300)
    assert payment.status is PaymentStatus.PARTIALLY_REFUNDED
    assert payment.anomalies == ()


def test_a_capture_above_the_authorization_is_kept_and_flagged():
    payment = payment_of(fact(K.CAPTURED, 1200), fact(K.AUTHORIZED, 1000))
    assert (payment.amount_authorized, payment.amount_captured) == (1000, 1200)
    assert [a.kind for a in payment.anomalies] == [AnomalyKind.CAPTURE_EXCEEDS_AUTHORIZATION]


def test_without_an_authorization_the_capture_counts_as_authorized():
    payment = payment_of(fact(K.CAPTURED, 800))
    assert payment.amount_authorized == 800


def test_the_largest_reported_capture_total_wins_whatever_the_order():
    assert payment_of(fact(K.CAPTURED, 100), fact(K.CAPTURED, 300)).amount_captured == 300
    assert payment_of(fact(K.CAPTURED, 300), fact(K.CAPTURED, 100)).amount_captured == 300


def test_failure_alone_is_failed_and_a_capture_overrides_it():
    assert payment_of(fact(K.FAILED)).status is PaymentStatus.FAILED
    assert payment_of(fact(K.FAILED), fact(K.CAPTURED, 100)).status is PaymentStatus.CAPTURED
    assert payment_of(fact(K.CAPTURED, 100), fact(K.FAILED)).status is PaymentStatus.CAPTURED


def test_a_dispute_takes_precedence_over_refunds():
    payment = payment_of(fact(K.CAPTURED, 100), fact(K.REFUNDED, 100, refund_id="re_1"), fact(K.DISPUTED, 100))
    assert payment.status is PaymentStatus.DISPUTED
    assert payment.is_disputed


def test_one_refund_id_reported_with_two_amounts_is_flagged():
    payment = payment_of(
        fact(K.CAPTURED, 1000),
        fact(K.REFUNDED, 100, refund_id="re_1"),
        fact(K.REFUNDED, 200, refund_id="re_1"),
    )
    assert payment.amount_refunded == 200
    assert [a.kind for a in payment.anomalies] == [AnomalyKind.REFUND_AMOUNT_CONFLICT]


def test_facts_in_two_currencies_are_kept_and_flagged():
    payment = payment_of(fact(K.AUTHORIZED, 100, currency="USD"), fact(K.CAPTURED, 100))
    assert payment.currency == "EUR"
    assert [a.kind for a in payment.anomalies] == [AnomalyKind.CURRENCY_CONFLICT]


def test_facts_naming_two_orders_are_flagged_and_the_first_named_kept():
    other = UUID("00000000-0000-4000-8000-0000000000bb")
    payment = payment_of(fact(K.CAPTURED, 100, order_id=other), fact(K.AUTHORIZED, 100))
    assert payment.order_id == other
    assert [a.kind for a in payment.anomalies] == [AnomalyKind.ORDER_CONFLICT]
    payment = payment_of(fact(K.AUTHORIZED, 100), fact(K.CAPTURED, 100, order_id=other))
    assert payment.order_id == ORDER


def test_an_anomaly_kind_is_flagged_once():
    payment = payment_of(fact(K.CAPTURED, 100))
    assert payment.flag_anomaly(AnomalyKind.OVERPAYMENT, "captured 100 > total 50", CONTEXT)
    assert not payment.flag_anomaly(AnomalyKind.OVERPAYMENT, "captured 200 > total 50", CONTEXT)
    assert payment.anomalies[0].detail == "captured 100 > total 50"


def test_a_fact_about_another_payment_is_refused():
    payment = payment_of()
    with pytest.raises(InvalidCommandError):
        payment.record(fact(K.CAPTURED, 100, ref="pi_2"), CONTEXT)


@pytest.mark.parametrize(
    "bad",
    [
        fact(K.REFUNDED, 100),
        fact(K.REFUNDED, 0, refund_id="re_1"),
        fact(K.CAPTURED, -1),
        fact(K.CAPTURED, 100, currency="eur"),
        GatewayEvent(K.CAPTURED, "", "pi_1", "evt_1", None, 1, "EUR"),
        GatewayEvent(K.CAPTURED, "stripe", "pi_1", "", None, 1, "EUR"),
    ],
)
def test_a_malformed_fact_is_refused_and_nothing_is_stored(bad: GatewayEvent):
    app = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    with pytest.raises(InvalidCommandError):
        app.execute(ApplyGatewayEvent(CONTEXT, MERCHANT, bad))
    assert app.recorder.max_notification_id() in (None, 0)


def test_a_redelivered_fact_through_the_application_changes_nothing():
    app = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    first = app.execute(ApplyGatewayEvent(CONTEXT, MERCHANT, fact(K.CAPTURED, 100, order_id=None)))
    position = app.recorder.max_notification_id()
    again = app.execute(ApplyGatewayEvent(CONTEXT, MERCHANT, fact(K.CAPTURED, 100, order_id=None)))
    assert (first.changed, again.changed) == (True, False)
    assert app.recorder.max_notification_id() == position
    assert again.payment.version == first.payment.version


# Issue 11, item 12: refunds that fail later, and refunds reported as running totals.


def test_a_refund_that_failed_later_is_reversed_whichever_arrives_first():
    refund = fact(K.REFUNDED, 300, refund_id="re_1")
    reversal = fact(K.REFUND_REVERSED, 300, refund_id="re_1")
    for facts in ([refund, reversal], [reversal, refund]):
        payment = payment_of(fact(K.CAPTURED, 1000), fact(K.REFUNDED, 200, refund_id="re_2"), *facts)
        assert payment.refunds == {"re_2": 200}
        assert payment.amount_refunded == 200
        assert payment.status is PaymentStatus.PARTIALLY_REFUNDED


def test_a_payment_whose_only_refund_was_reversed_is_captured_again():
    payment = payment_of(fact(K.CAPTURED, 1000), fact(K.REFUNDED, 1000, refund_id="re_1"))
    assert payment.status is PaymentStatus.REFUNDED
    assert payment.record(fact(K.REFUND_REVERSED, 1000, refund_id="re_1"), CONTEXT)
    assert not payment.record(fact(K.REFUND_REVERSED, 1000, refund_id="re_1"), CONTEXT)
    assert (payment.status, payment.amount_refunded) == (PaymentStatus.CAPTURED, 0)


def running_total(amount: int) -> GatewayEvent:
    return replace(fact(K.REFUNDED, amount, refund_id="ch_1"), total_ref="ch_1")


def test_a_running_total_of_refunds_counts_its_largest_report_without_an_anomaly():
    payment = payment_of(fact(K.CAPTURED, 1000), running_total(300), running_total(700), running_total(300))
    assert payment.amount_refunded == 700
    assert payment.anomalies == ()


def test_a_reversal_naming_a_running_total_takes_the_failed_refund_off_it():
    reversal = replace(fact(K.REFUND_REVERSED, 300, refund_id="re_9"), total_ref="ch_1")
    payment = payment_of(fact(K.CAPTURED, 1000), running_total(700), reversal)
    assert payment.amount_refunded == 400
    assert payment_of(fact(K.CAPTURED, 1000), reversal, running_total(700)).amount_refunded == 400


def test_a_total_keyed_by_something_else_than_what_it_totals_is_refused():
    with pytest.raises(InvalidCommandError):
        payment_of(replace(fact(K.REFUNDED, 5, refund_id="re_1"), total_ref="ch_1"))


def test_a_refund_event_stored_as_v1_is_upcast_as_one_refund():
    app = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    stored = StoredEvent(
        originator_id=uuid4(),
        originator_version=2,
        topic=get_topic(Payment.Refunded),
        state=(
            b'{"timestamp":"2024-05-01T10:00:00+00:00","merchant_id":"' + str(MERCHANT).encode() + b'",'
            b'"metadata":{"actor":"gateway:stripe","request_id":"1"},"event_id":"evt_1","order_id":null,'
            b'"amount":300,"currency":"EUR","refund_id":"re_1"}'
        ),
    )
    event = app.mapper.to_domain_event(stored)
    assert isinstance(event, Payment.Refunded)
    assert (event.refund_id, event.amount, event.total_ref) == ("re_1", 300, None)
    assert app.mapper.to_stored_event(event).state.endswith(b'"class_version":2}')
