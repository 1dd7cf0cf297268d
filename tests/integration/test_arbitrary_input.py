"""Arbitrary strings and integers in every field of every POST body and webhook payload.

Issue 11, "Show". Through the real app (Litestar, PostgreSQL, Redis, the group committer,
the inbox worker's code and the projection runner): every answer is either a 2xx whose
effects are then projected — the projections reach the head of the event store and the
read models agree with the events — or a 4xx problem with a contract code. Never a 5xx.

Hypothesis runs are bounded (``max_examples``); deadlines are off because every example
is a round trip through PostgreSQL, whose time says nothing about the code under test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from adapters.settings import Settings
from api.webhooks.signatures import sign_standard, sign_stripe
from projections import quarantine
from tests.integration.conftest import create_merchant
from tests.integration.inbox_running import InboxDrain
from tests.integration.serving import wait_for
from tests.integration.webhook_running import projections_caught_up

pytestmark = [
    pytest.mark.usefixtures("projections_running"),
    # Hypothesis warns when the global random state moves during a draw; here it is the
    # app's own threads (the connection pools' jitter), not the strategies.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

# The problem codes of CONTRACT.md and of the README's decisions where it is silent.
CONTRACT_CODES = {
    "invalid_request",
    "malformed",
    "not_found",
    "out_of_stock",
    "insufficient_stock",
    "invalid_state",
    "currency_mismatch",
    "order_already_exists",
    "idempotency_key_reused",
    "idempotency_key_in_use",
    "payload_too_large",
    "rate_limited",
    "method_not_allowed",
    "unsupported_media_type",
}
FUZZ = settings(
    max_examples=60,
    deadline=None,  # each example is several PostgreSQL round trips
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MISSING = object()

# Arbitrary values: any string (lone surrogates, controls, huge), any integer (far past
# 64 bits), and the other JSON kinds now and then.
ANY_TEXT = st.text(max_size=300)
ANY_INT = st.integers()
ANY_VALUE = st.one_of(ANY_TEXT, ANY_INT, st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def field_of(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A field's value: mostly a valid one (so that whole bodies get through now and then),
    else an arbitrary string or integer, another JSON value, or absent."""
    mode = draw(st.integers(0, 11))
    if mode <= 8:
        return draw(valid)
    return draw([ANY_TEXT, ANY_INT, st.one_of(ANY_VALUE, st.just(MISSING))][mode - 9])


def body_of(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object drawing every field with :func:`field_of`, sometimes with an unknown field."""

    @st.composite
    def draw_body(draw: st.DrawFn) -> dict[str, Any]:
        body = {name: draw(field_of(valid)) for name, valid in fields.items()}
        if draw(st.integers(0, 29)) == 0:
            body[draw(ANY_TEXT)] = draw(ANY_VALUE)
        return {name: value for name, value in body.items() if value is not MISSING}

    return draw_body()


SKUS = st.sampled_from(["FUZZ-A", "FUZZ-B", "FUZZ-C"])
VALID_TEXT = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=20)
CURRENCIES = st.sampled_from(["EUR"] * 6 + ["USD", "eur", "XXX"])
MONEY = body_of({"amount": st.integers(0, 10_000), "currency": CURRENCIES})
LINE = body_of({"sku": SKUS, "quantity": st.integers(1, 5), "unit_price": MONEY})
ORDER_BODY = st.one_of(
    # Orders that should get through, so that later requests meet existing orders and stock.
    st.fixed_dictionaries(
        {
            "lines": st.lists(
                st.fixed_dictionaries(
                    {
                        "sku": SKUS,
                        "quantity": st.integers(1, 5),
                        "unit_price": st.just({"amount": 100, "currency": "EUR"}),
                    }
                ),
                min_size=1,
                max_size=3,
            ),
            "currency": st.just("EUR"),
        },
        optional={"customer_ref": ANY_TEXT, "hold_seconds": st.one_of(ANY_INT, st.integers(60, 86_400))},
    ),
    body_of(
        {
            "lines": st.lists(LINE, min_size=1, max_size=3),
            "currency": CURRENCIES,
            "customer_ref": VALID_TEXT,
            "hold_seconds": st.integers(60, 86_400),
        }
    ),
)
# A third of the bodies should get through (with the other fields arbitrary), so that every
# run reaches the commands, the markers and the projections, not only the edge's checks.
RECEIPT_BODY = st.one_of(
    st.fixed_dictionaries({"quantity": st.integers(1, 1_000)}, optional={"reference": ANY_TEXT}),
    body_of({"quantity": st.integers(1, 1_000), "reference": VALID_TEXT}),
    body_of({"quantity": st.integers(1, 1_000), "reference": VALID_TEXT}),
)
ADJUSTMENT_BODY = st.one_of(
    st.fixed_dictionaries({"delta": st.integers(1, 5), "reason": ANY_TEXT}),
    body_of({"delta": st.integers(-5, 5), "reason": VALID_TEXT}),
    body_of({"delta": st.integers(-5, 5), "reason": VALID_TEXT}),
)
MERCHANT_BODY = body_of({"name": VALID_TEXT})
PATH_SKU = st.one_of(SKUS, SKUS, SKUS, ANY_TEXT)
UNIQUE = "unique"
KEYS = st.one_of(
    st.none(),
    st.just(UNIQUE),  # a fresh key, made when the request is sent
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300),
)


def _keyed(headers: dict[str, str], key: str | None) -> dict[str, str]:
    if key is None:
        return headers
    return {**headers, "Idempotency-Key": f"fresh-{uuid.uuid4()}" if key == UNIQUE else key}


@dataclass
class Seen:
    """What the answers said, for the checks after the run."""

    statuses: dict[int, int] = field(default_factory=dict)
    codes: set[str] = field(default_factory=set)
    skus: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)

    def answer(self, response: Any) -> None:
        """Checks one answer: a 2xx, or a 4xx problem with a contract code."""
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, response.text
        if status >= 400:
            assert response.headers["content-type"].startswith("application/problem+json"), response.text
            problem = response.json()
            assert problem["code"] in CONTRACT_CODES, problem
            assert problem["status"] == status


def _json(body: dict[str, Any]) -> bytes:
    # Lone surrogates and huge integers go out as JSON allows them; the API must refuse them.
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def fuzzed(client: TestClient[Any]) -> dict[str, Any]:
    return create_merchant(client, "Arbitrary input")


@pytest.fixture(scope="module")
def drain(database_url: str, api_settings: Settings) -> Iterator[InboxDrain]:
    inbox = InboxDrain(database_url, api_settings)
    yield inbox
    inbox.close()


def _projected_and_consistent(client: TestClient[Any], merchant: dict[str, Any], database_url: str, seen: Seen) -> None:
    """The projections reached the head with nothing quarantined, and every touched row equals the events."""
    wait_for(lambda: projections_caught_up(database_url), timeout_s=60, what="projections to reach the head")
    with psycopg.connect(database_url) as conn:
        assert quarantine.counts(conn) == {}, "an accepted input must never poison a read model"
    headers = merchant["headers"]
    for sku in seen.skus:
        projected = client.get(f"/v1/inventory/{quote(sku, safe='')}", headers=headers)
        replayed = client.get(f"/v1/inventory/{quote(sku, safe='')}?as_of=2999-01-01T00:00:00Z", headers=headers)
        assert projected.status_code == replayed.status_code == 200, (projected.text, replayed.text)
        assert projected.json() == replayed.json()
    for order_id in seen.orders:
        projected = client.get(f"/v1/orders/{order_id}", headers=headers)
        replayed = client.get(f"/v1/orders/{order_id}?as_of=2999-01-01T00:00:00Z", headers=headers)
        assert projected.json() == replayed.json()


def test_arbitrary_stock_bodies_are_answered_2xx_and_projected_or_4xx_with_a_contract_code(
    client: TestClient[Any], fuzzed: dict[str, Any], database_url: str
) -> None:
    seen = Seen()

    @FUZZ
    @given(kind=st.sampled_from(["receipts", "adjustments"]), sku=PATH_SKU, data=st.data(), key=KEYS)
    def send(kind: str, sku: str, data: st.DataObject, key: str | None) -> None:
        body = data.draw(RECEIPT_BODY if kind == "receipts" else ADJUSTMENT_BODY)
        headers = _keyed({**fuzzed["headers"], "Content-Type": "application/json"}, key)
        response = client.post(f"/v1/inventory/{quote(sku, safe='')}/{kind}", content=_json(body), headers=headers)
        seen.answer(response)
        if response.status_code == 201:
            seen.skus.add(response.json()["sku"])

    send()
    assert seen.statuses.get(201), seen.statuses  # the run did reach the commands
    _projected_and_consistent(client, fuzzed, database_url, seen)


def test_arbitrary_order_and_cancel_bodies_are_answered_2xx_and_projected_or_4xx_with_a_contract_code(
    client: TestClient[Any], fuzzed: dict[str, Any], database_url: str
) -> None:
    seen = Seen()
    for sku in ("FUZZ-A", "FUZZ-B", "FUZZ-C"):
        stocked = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 10_000}, headers=fuzzed["headers"])
        assert stocked.status_code == 201

    @settings(FUZZ, max_examples=100)
    @given(body=ORDER_BODY, key=KEYS, cancel=st.one_of(st.none(), ANY_VALUE))
    def send(body: dict[str, Any], key: str | None, cancel: Any) -> None:
        headers = _keyed({**fuzzed["headers"], "Content-Type": "application/json"}, key)
        response = client.post("/v1/orders", content=_json(body), headers=headers)
        seen.answer(response)
        if response.status_code >= 400:
            seen.codes.add(response.json()["code"])
        if response.status_code != 201:
            return
        order_id = response.json()["id"]
        seen.orders.add(order_id)
        cancel_body = b"" if cancel is None else _json({"reason": cancel})
        seen.answer(client.post(f"/v1/orders/{order_id}/cancel", content=cancel_body, headers=fuzzed["headers"]))

    send()
    assert seen.statuses.get(201), (seen.statuses, seen.codes)
    seen.skus |= {"FUZZ-A", "FUZZ-B", "FUZZ-C"}
    _projected_and_consistent(client, fuzzed, database_url, seen)


def test_arbitrary_merchant_bodies_are_answered_201_or_400(
    client: TestClient[Any], admin_headers: dict[str, str]
) -> None:
    seen = Seen()

    @FUZZ
    @given(body=MERCHANT_BODY)
    def send(body: dict[str, Any]) -> None:
        headers = {**admin_headers, "Content-Type": "application/json"}
        response = client.post("/v1/admin/merchants", content=_json(body), headers=headers)
        seen.answer(response)
        assert response.status_code in (201, 400), response.text

    send()


# Webhooks: every field of each payload the edge reads, correctly signed, so that the
# arbitrary values reach the parsers, the inbox and the worker.

GATEWAY_REFS = st.sampled_from(["pi_fuzz_1", "pi_fuzz_2"])
STRIPE_TYPES = st.sampled_from(
    [
        "payment_intent.amount_capturable_updated",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.refunded",
        "charge.dispute.created",
        "charge.refund.updated",
        "refund.failed",
    ]
)
AMOUNTS = st.integers(0, 5_000)
REFUND = body_of(
    {
        "id": st.sampled_from(["re_1", "re_2"]),
        "amount": AMOUNTS,
        "status": st.sampled_from(["succeeded", "failed", "pending"]),
    }
)


def stripe_event(order_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A Stripe event of a handled type (or any string), naming one of ``order_ids`` or none."""
    stripe_object = body_of(
        {
            "id": GATEWAY_REFS,
            "payment_intent": GATEWAY_REFS,
            "charge": st.just("ch_fuzz"),
            "amount": AMOUNTS,
            "amount_capturable": AMOUNTS,
            "amount_received": AMOUNTS,
            "amount_refunded": AMOUNTS,
            "currency": st.sampled_from(["eur", "usd"]),
            "status": st.sampled_from(["succeeded", "failed", "canceled"]),
            "metadata": body_of({"order_id": st.sampled_from([*order_ids, "not-a-uuid"])}),
            "refunds": body_of({"data": st.lists(REFUND, max_size=3)}),
        }
    )
    return body_of(
        {
            "id": st.uuids().map(lambda u: f"evt_{u.hex}"),
            "type": STRIPE_TYPES,
            "created": st.integers(0, 2**31),
            "data": body_of({"object": stripe_object}),
        }
    )


def standard_event(order_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A Standard Webhooks event of a handled type (or any string), naming one of ``order_ids`` or none."""
    data = body_of(
        {
            "gateway_ref": GATEWAY_REFS,
            "order_id": st.sampled_from([*order_ids, "not-a-uuid"]),
            "amount": AMOUNTS,
            "currency": st.sampled_from(["EUR", "usd"]),
            "refund_id": st.sampled_from(["rf_1", "rf_2"]),
        }
    )
    types = ["payment.authorized", "payment.captured", "payment.failed", "payment.refunded", "payment.disputed"]
    return body_of({"type": st.sampled_from(types), "data": data})


WEBHOOK_IDS = st.one_of(
    st.uuids().map(lambda u: f"msg_{u.hex}"),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=300),
)


def _signed(merchant: dict[str, Any], gateway: str, body: bytes, webhook_id: str) -> dict[str, str]:
    now = int(time.time())
    if gateway == "stripe":
        return {"Stripe-Signature": sign_stripe(body, merchant["webhook_secrets"]["stripe"], now)}
    return sign_standard(body, merchant["webhook_secrets"]["standard"], webhook_id, now)


def test_arbitrary_webhook_payloads_are_answered_2xx_and_applied_and_projected_or_4xx_with_a_contract_code(
    client: TestClient[Any], fuzzed: dict[str, Any], drain: InboxDrain, database_url: str
) -> None:
    seen = Seen()
    headers = fuzzed["headers"]
    assert client.post("/v1/inventory/FUZZ-W/receipts", json={"quantity": 100}, headers=headers).status_code == 201
    line = {"sku": "FUZZ-W", "quantity": 1, "unit_price": {"amount": 1_000, "currency": "EUR"}}
    orders = [client.post("/v1/orders", json={"lines": [line], "currency": "EUR"}, headers=headers) for _ in range(2)]
    order_ids = [order.json()["id"] for order in orders]
    seen.orders |= set(order_ids)
    seen.skus.add("FUZZ-W")
    events = {"stripe": stripe_event([*order_ids, str(uuid.UUID(int=7))]), "standard": standard_event(order_ids)}

    def sent(gateway: str, payload: dict[str, Any], webhook_id: str) -> Any:
        body = _json(payload)
        headers = {**_signed(fuzzed, gateway, body, webhook_id), "Content-Type": "application/json"}
        return client.post(f"/v1/webhooks/{fuzzed['merchant_id']}/{gateway}", content=body, headers=headers)

    @settings(FUZZ, max_examples=120)
    @given(gateway=st.sampled_from(["stripe", "standard"]), data=st.data(), webhook_id=WEBHOOK_IDS)
    def send(gateway: str, data: st.DataObject, webhook_id: str) -> None:
        payload = data.draw(events[gateway])
        response = sent(gateway, payload, webhook_id)
        seen.answer(response)
        if response.status_code == 200:
            assert response.json()["status"] in {"accepted", "duplicate", "ignored"}

    send()
    assert seen.statuses.get(200), seen.statuses
    report = drain.drain(fuzzed["merchant_id"])
    assert drain.pending(fuzzed["merchant_id"]) == []
    unexpected = {row: reason for row, reason in report.parked.items() if reason.startswith("error:")}
    assert not unexpected, unexpected  # parked only as poison the domain refused, never by a bug
    _projected_and_consistent(client, fuzzed, database_url, seen)
