"""Parsing verified webhook bodies into gateway facts."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest

from adapters.gateways import Ignored, MalformedPayloadError, event_id_of, parse_delivery
from adapters.gateways.standard import parse as parse_standard
from adapters.gateways.stripe import parse as parse_stripe
from api.webhooks.signatures import header_value
from domain.gateway import GatewayEvent, GatewayEventKind

ORDER_ID = UUID("0b6f6a36-4a4e-4a47-9d0a-7f3c5a1e9b21")


def stripe_body(event_type: str, obj: dict[str, Any], **extra: Any) -> bytes:
    event = {
        "id": "evt_1N",
        "object": "event",
        "type": event_type,
        "created": 1_700_000_000,
        "livemode": False,
        "data": {"object": obj},
        **extra,
    }
    return json.dumps(event).encode()


def payment_intent(**fields: Any) -> dict[str, Any]:
    return {
        "id": "pi_3Mt",
        "object": "payment_intent",
        "currency": "usd",
        "metadata": {"order_id": str(ORDER_ID)},
        **fields,
    }


def refund(refund_id: str, amount: int, **fields: Any) -> dict[str, Any]:
    return {"id": refund_id, "object": "refund", "amount": amount, **fields}


def charge(refunds: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "ch_3Mt",
        "object": "charge",
        "payment_intent": "pi_3Mt",
        "currency": "eur",
        "amount_refunded": sum(r["amount"] for r in refunds),
        "refunds": {"object": "list", "data": refunds, "has_more": False},
        **fields,
    }


def stripe_fact(kind: GatewayEventKind, amount: int, **fields: Any) -> GatewayEvent:
    values: dict[str, Any] = {
        "kind": kind,
        "gateway": "stripe",
        "gateway_ref": "pi_3Mt",
        "event_id": "evt_1N",
        "order_id": ORDER_ID,
        "amount": amount,
        "currency": "USD",
        **fields,
    }
    return GatewayEvent(**values)


def standard_body(event_type: str, **data: Any) -> bytes:
    fields = {"gateway_ref": "pay_42", "amount": 2500, "currency": "GBP", **data}
    return json.dumps({"type": event_type, "timestamp": "2024-01-01T00:00:00Z", "data": fields}).encode()


def malformed_detail(parse: Any, *args: Any) -> str:
    with pytest.raises(MalformedPayloadError) as caught:
        parse(*args)
    assert caught.value.detail
    return caught.value.detail


# --- Stripe ---------------------------------------------------------------------------


def test_stripe_amount_capturable_updated_is_an_authorization_of_the_capturable_amount() -> None:
    body = stripe_body(
        "payment_intent.amount_capturable_updated",
        payment_intent(amount=5000, amount_capturable=4000, amount_received=0),
    )
    assert parse_stripe(body) == [stripe_fact(GatewayEventKind.AUTHORIZED, 4000)]


def test_stripe_payment_intent_succeeded_is_a_capture_of_the_amount_received() -> None:
    body = stripe_body(
        "payment_intent.succeeded",
        payment_intent(amount=5000, amount_capturable=0, amount_received=4500),
    )
    assert parse_stripe(body) == [stripe_fact(GatewayEventKind.CAPTURED, 4500)]


def test_stripe_payment_failed_is_a_failure_with_amount_zero() -> None:
    body = stripe_body("payment_intent.payment_failed", payment_intent(amount=5000))
    assert parse_stripe(body) == [stripe_fact(GatewayEventKind.FAILED, 0)]


def test_stripe_charge_refunded_gives_one_refund_per_listed_refund() -> None:
    body = stripe_body("charge.refunded", charge([refund("re_1", 300), refund("re_2", 700)]))
    expected = [
        stripe_fact(GatewayEventKind.REFUNDED, 300, currency="EUR", order_id=None, refund_id="re_1"),
        stripe_fact(GatewayEventKind.REFUNDED, 700, currency="EUR", order_id=None, refund_id="re_2"),
    ]
    assert parse_stripe(body) == expected


def test_stripe_refund_reads_the_order_from_the_charge_metadata_when_present() -> None:
    obj = charge([refund("re_1", 300)], metadata={"order_id": str(ORDER_ID)})
    [fact] = parse_stripe(stripe_body("charge.refunded", obj))  # type: ignore[misc]
    assert fact.order_id == ORDER_ID


def test_stripe_refund_listed_twice_in_one_event_gives_one_fact() -> None:
    listed = [refund("re_1", 300), refund("re_2", 700), refund("re_1", 300)]
    facts = parse_stripe(stripe_body("charge.refunded", charge(listed)))
    assert isinstance(facts, list)
    assert [(f.refund_id, f.amount) for f in facts] == [("re_1", 300), ("re_2", 700)]


def test_stripe_refund_listed_twice_with_different_amounts_is_malformed() -> None:
    body = stripe_body("charge.refunded", charge([refund("re_1", 300), refund("re_1", 400)]))
    assert "re_1" in malformed_detail(parse_stripe, body)


def test_stripe_failed_and_canceled_refunds_are_not_refunds() -> None:
    # Issue 11, item 12 changed this test: a pending refund no longer counts (only a
    # succeeded one does), and failed or canceled ones are reversals, not skipped.
    listed = [
        refund("re_1", 300, status="failed"),
        refund("re_2", 700, status="succeeded"),
        refund("re_3", 100, status="canceled"),
        refund("re_4", 50, status="pending"),
    ]
    facts = parse_stripe(stripe_body("charge.refunded", charge(listed)))
    assert isinstance(facts, list)
    assert [f.refund_id for f in facts if f.kind is GatewayEventKind.REFUNDED] == ["re_2"]
    assert [f.refund_id for f in facts if f.kind is GatewayEventKind.REFUND_REVERSED] == ["re_1", "re_3"]


def test_stripe_a_pending_refund_alone_is_not_counted_yet() -> None:
    body = stripe_body("charge.refunded", charge([refund("re_1", 300, status="pending")]))
    assert parse_stripe(body) == Ignored("charge.refunded", "no refund listed")


def test_stripe_charge_refunded_without_a_refunds_list_counts_the_charges_amount_refunded() -> None:
    obj = charge([refund("re_1", 300), refund("re_2", 200)])
    del obj["refunds"]  # recent API versions do not embed the list
    facts = parse_stripe(stripe_body("charge.refunded", obj))
    assert facts == [
        stripe_fact(
            GatewayEventKind.REFUNDED, 500, currency="EUR", order_id=None, refund_id="ch_3Mt", total_ref="ch_3Mt"
        )
    ]


def test_stripe_charge_refunded_without_a_list_and_nothing_refunded_is_ignored() -> None:
    obj = charge([])
    del obj["refunds"]
    assert isinstance(parse_stripe(stripe_body("charge.refunded", obj)), Ignored)


@pytest.mark.parametrize("event_type", ["charge.refund.updated", "refund.updated", "refund.failed"])
@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_stripe_a_refund_that_failed_later_is_reversed_naming_its_charge(event_type: str, status: str) -> None:
    obj = {**refund("re_1", 300, status=status), "currency": "eur", "payment_intent": "pi_3Mt", "charge": "ch_3Mt"}
    facts = parse_stripe(stripe_body(event_type, obj))
    assert facts == [
        stripe_fact(
            GatewayEventKind.REFUND_REVERSED,
            300,
            currency="EUR",
            order_id=None,
            refund_id="re_1",
            total_ref="ch_3Mt",
        )
    ]


@pytest.mark.parametrize("status", ["succeeded", "pending", None])
def test_stripe_a_refund_object_in_any_other_state_is_ignored_as_charge_refunded_counts_it(status: str | None) -> None:
    obj = {**refund("re_1", 300, status=status), "currency": "eur", "payment_intent": "pi_3Mt", "charge": "ch_3Mt"}
    assert isinstance(parse_stripe(stripe_body("refund.updated", obj)), Ignored)


def test_stripe_charge_refunded_without_refunds_listed_is_ignored() -> None:
    result = parse_stripe(stripe_body("charge.refunded", charge([])))
    assert result == Ignored("charge.refunded", "no refund listed")


def test_stripe_charge_without_payment_intent_is_ignored() -> None:
    obj = charge([refund("re_1", 300)], payment_intent=None)
    assert isinstance(parse_stripe(stripe_body("charge.refunded", obj)), Ignored)


def test_stripe_dispute_created_is_a_dispute_of_the_payment_intent() -> None:
    obj = {
        "id": "dp_1",
        "object": "dispute",
        "charge": "ch_3Mt",
        "payment_intent": "pi_3Mt",
        "amount": 4500,
        "currency": "usd",
        "reason": "fraudulent",
    }
    facts = parse_stripe(stripe_body("charge.dispute.created", obj))
    assert facts == [stripe_fact(GatewayEventKind.DISPUTED, 4500, order_id=None)]


def test_stripe_currency_is_upper_cased() -> None:
    body = stripe_body("payment_intent.succeeded", payment_intent(amount_received=1, currency="jpy"))
    facts = parse_stripe(body)
    assert isinstance(facts, list)
    assert facts[0].currency == "JPY"


@pytest.mark.parametrize(
    "metadata",
    [None, {}, {"order_id": "A-1001"}, {"order_id": ""}, {"other": "x"}],
)
def test_stripe_missing_or_non_uuid_order_id_means_unknown_order(metadata: Any) -> None:
    obj = payment_intent(amount_received=100, metadata=metadata)
    facts = parse_stripe(stripe_body("payment_intent.succeeded", obj))
    assert isinstance(facts, list)
    assert facts[0].order_id is None


def test_stripe_payment_intent_without_metadata_key_means_unknown_order() -> None:
    obj = payment_intent(amount_received=100)
    del obj["metadata"]
    facts = parse_stripe(stripe_body("payment_intent.succeeded", obj))
    assert isinstance(facts, list)
    assert facts[0].order_id is None


def test_stripe_fields_added_by_the_gateway_are_tolerated() -> None:
    obj = payment_intent(amount_received=100, latest_charge={"id": "ch_1"}, new_field=[1, 2])
    body = stripe_body("payment_intent.succeeded", obj, api_version="2099-01-01", extra=None)
    assert parse_stripe(body) == [stripe_fact(GatewayEventKind.CAPTURED, 100)]


@pytest.mark.parametrize(
    "event_type",
    ["customer.created", "payment_intent.created", "charge.succeeded", "invoice.paid"],
)
def test_stripe_other_event_types_are_ignored_whatever_their_object(event_type: str) -> None:
    body = stripe_body(event_type, {"anything": ["goes", 1, None]})
    assert parse_stripe(body) == Ignored(event_type, "event type not handled")


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[]", "object"),
        (b'{"type": "payment_intent.succeeded", "data": {"object": {}}}', "`id`"),
        (b'{"id": "evt_1", "data": {"object": {}}}', "`type`"),
        (b'{"id": "", "type": "x", "data": {}}', "$.id"),
        (b'{"id": 12, "type": "x", "data": {}}', "$.id"),
        (b'{"id": "evt_1", "type": "payment_intent.succeeded"}', "`data`"),
        (b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {}}', "`object`"),
    ],
)
def test_stripe_malformed_envelope_is_rejected_with_a_readable_detail(body: bytes, mentions: str) -> None:
    assert mentions in malformed_detail(parse_stripe, body)


@pytest.mark.parametrize(
    ("event_type", "obj", "mentions"),
    [
        ("payment_intent.succeeded", payment_intent(), "amount_received"),
        ("payment_intent.succeeded", payment_intent(amount_received="100"), "amount_received"),
        ("payment_intent.succeeded", payment_intent(amount_received=1.5), "amount_received"),
        ("payment_intent.succeeded", payment_intent(amount_received=100.0), "amount_received"),
        ("payment_intent.succeeded", payment_intent(amount_received=True), "amount_received"),
        ("payment_intent.succeeded", payment_intent(amount_received=-1), "amount_received"),
        ("payment_intent.succeeded", payment_intent(amount_received=2**63), "amount_received"),
        ("payment_intent.amount_capturable_updated", payment_intent(), "amount_capturable"),
        (
            "payment_intent.succeeded",
            payment_intent(amount_received=1, currency="usdd"),
            "currency",
        ),
        ("payment_intent.succeeded", payment_intent(amount_received=1, currency="u1d"), "currency"),
        (
            "payment_intent.succeeded",
            payment_intent(amount_received=1, currency="usd\n"),
            "currency",
        ),
        ("payment_intent.succeeded", payment_intent(amount_received=1, currency=None), "currency"),
        (
            "payment_intent.succeeded",
            payment_intent(amount_received=1, id=None),
            "$.data.object.id",
        ),
        ("payment_intent.payment_failed", {"id": "pi_1"}, "currency"),
        ("charge.refunded", charge([refund("re_1", -5)]), "amount"),
        ("charge.refunded", charge([{"amount": 5}]), "`id`"),
        ("charge.refunded", {"payment_intent": "pi_1", "currency": "usd"}, "`refunds`"),
        ("charge.dispute.created", {"payment_intent": "pi_1", "currency": "usd"}, "`amount`"),
    ],
)
def test_stripe_known_event_with_invalid_needed_field_is_malformed(
    event_type: str, obj: dict[str, Any], mentions: str
) -> None:
    assert mentions in malformed_detail(parse_stripe, stripe_body(event_type, obj))


# --- Standard Webhooks ----------------------------------------------------------------


def standard_fact(kind: GatewayEventKind, amount: int = 2500, **fields: Any) -> GatewayEvent:
    values: dict[str, Any] = {
        "kind": kind,
        "gateway": "standard",
        "gateway_ref": "pay_42",
        "event_id": "msg_1",
        "order_id": ORDER_ID,
        "amount": amount,
        "currency": "GBP",
        **fields,
    }
    return GatewayEvent(**values)


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("payment.authorized", GatewayEventKind.AUTHORIZED),
        ("payment.captured", GatewayEventKind.CAPTURED),
        ("payment.disputed", GatewayEventKind.DISPUTED),
    ],
)
def test_standard_payment_event_becomes_the_matching_fact(event_type: str, kind: GatewayEventKind) -> None:
    body = standard_body(event_type, order_id=str(ORDER_ID))
    assert parse_standard(body, "msg_1") == [standard_fact(kind)]


def test_standard_payment_refunded_carries_this_refunds_amount_and_id() -> None:
    body = standard_body("payment.refunded", order_id=str(ORDER_ID), amount=400, refund_id="rf_9")
    expected = [standard_fact(GatewayEventKind.REFUNDED, 400, refund_id="rf_9")]
    assert parse_standard(body, "msg_1") == expected


def test_standard_payment_refunded_without_refund_id_is_malformed() -> None:
    body = standard_body("payment.refunded", amount=400)
    assert "refund_id" in malformed_detail(parse_standard, body, "msg_1")


def test_standard_payment_failed_has_amount_zero_and_may_omit_the_amount() -> None:
    with_amount = standard_body("payment.failed", order_id=str(ORDER_ID), amount=999)
    without_amount = json.loads(with_amount)
    del without_amount["data"]["amount"]
    expected = [standard_fact(GatewayEventKind.FAILED, 0)]
    assert parse_standard(with_amount, "msg_1") == expected
    assert parse_standard(json.dumps(without_amount).encode(), "msg_1") == expected


def test_standard_refund_id_outside_a_refund_is_dropped() -> None:
    body = standard_body("payment.captured", refund_id="rf_9")
    facts = parse_standard(body, "msg_1")
    assert isinstance(facts, list)
    assert facts[0].refund_id is None


def test_standard_order_id_is_optional_and_currency_is_upper_cased() -> None:
    body = standard_body("payment.captured", currency="gbp")
    assert parse_standard(body, "msg_1") == [standard_fact(GatewayEventKind.CAPTURED, order_id=None)]


def test_standard_fields_added_by_the_sender_are_tolerated() -> None:
    body = standard_body("payment.captured", order_id=str(ORDER_ID), fee={"amount": 3}, note="x")
    assert parse_standard(body, "msg_1") == [standard_fact(GatewayEventKind.CAPTURED)]


@pytest.mark.parametrize("event_type", ["payment.created", "customer.updated", "ping"])
def test_standard_other_event_types_are_ignored_whatever_their_data(event_type: str) -> None:
    body = json.dumps({"type": event_type, "data": [1, 2, 3]}).encode()
    assert parse_standard(body, "msg_1") == Ignored(event_type, "event type not handled")


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"{", "not valid JSON"),
        (b'"payment.captured"', "object"),
        (b'{"data": {}}', "`type`"),
        (b'{"type": "payment.captured"}', "`data`"),
        (standard_body("payment.captured", gateway_ref=""), "gateway_ref"),
        (standard_body("payment.captured", gateway_ref=None), "gateway_ref"),
        (standard_body("payment.captured", amount=None), "amount"),
        (standard_body("payment.authorized", amount="10"), "amount"),
        (standard_body("payment.captured", amount=-1), "amount"),
        (standard_body("payment.captured", amount=12.0), "amount"),
        (standard_body("payment.captured", currency="pound"), "currency"),
        (standard_body("payment.captured", currency="£££"), "currency"),
        (standard_body("payment.captured", order_id="A-1001"), "order_id"),
        (standard_body("payment.refunded", refund_id=""), "refund_id"),
    ],
)
def test_standard_malformed_body_is_rejected_with_a_readable_detail(body: bytes, mentions: str) -> None:
    assert mentions in malformed_detail(parse_standard, body, "msg_1")


def test_standard_amount_key_missing_is_malformed() -> None:
    body = json.loads(standard_body("payment.captured"))
    del body["data"]["amount"]
    detail = malformed_detail(parse_standard, json.dumps(body).encode(), "msg_1")
    assert "amount" in detail


@pytest.mark.parametrize("webhook_id", ["", "x" * 256, None, "msg\n", "msg\x00", "m\x85sg"])
def test_standard_webhook_id_must_be_1_to_255_characters_without_controls(webhook_id: str | None) -> None:
    malformed_detail(parse_standard, standard_body("payment.captured"), webhook_id)


# --- Either gateway -------------------------------------------------------------------


def test_event_id_of_stripe_is_the_body_id() -> None:
    body = stripe_body("customer.created", {})
    assert event_id_of("stripe", body, "not-this") == "evt_1N"


def test_event_id_of_stripe_without_id_is_malformed() -> None:
    with pytest.raises(MalformedPayloadError):
        event_id_of("stripe", b'{"type": "x"}')


@pytest.mark.parametrize("event_id", ["evt\n", "evt\x00", "evt\x7f", "e\x9fvt"])
def test_a_stripe_event_id_with_control_characters_is_malformed(event_id: str) -> None:
    body = json.dumps({"id": event_id, "type": "payment_intent.succeeded"}).encode()
    with pytest.raises(MalformedPayloadError):
        event_id_of("stripe", body)


def test_event_id_of_standard_is_the_webhook_id_header() -> None:
    assert event_id_of("standard", b"not even json", "msg_7") == "msg_7"


def test_the_webhook_id_header_is_found_in_any_case() -> None:
    assert header_value({"Webhook-Id": "msg_7"}, "webhook-id") == "msg_7"
    assert header_value({"other": "x"}, "webhook-id") is None


def test_event_id_of_standard_without_webhook_id_is_malformed() -> None:
    with pytest.raises(MalformedPayloadError):
        event_id_of("standard", b"{}")


def test_parse_delivery_dispatches_on_gateway() -> None:
    stripe = stripe_body("payment_intent.succeeded", payment_intent(amount_received=4500))
    assert parse_delivery("stripe", stripe) == [stripe_fact(GatewayEventKind.CAPTURED, 4500)]
    standard = standard_body("payment.captured", order_id=str(ORDER_ID))
    assert parse_delivery("standard", standard, "msg_1") == [standard_fact(GatewayEventKind.CAPTURED)]


@pytest.mark.parametrize("function", [parse_delivery, event_id_of])
def test_unknown_gateway_is_a_programming_error(function: Any) -> None:
    with pytest.raises(ValueError, match="unknown gateway"):
        function("paypal", b"{}")
