"""The webhook edge over HTTP: verify, deduplicate, store, acknowledge — or store nothing."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker
from litestar.testing import TestClient

from adapters.database import connection_pool
from adapters.gateways.secrets import generate_secret
from adapters.settings import Settings
from api.app import create_app
from tests.integration.conftest import create_merchant
from tests.integration.webhook_senders import (
    Delivery,
    inbox_rows,
    standard_body,
    standard_delivery,
    standard_headers,
    stripe_body,
    stripe_delivery,
    stripe_headers,
)
from workers.inbox import sweep_pending

WEBHOOK_BODY_LIMIT = 256 * 1024
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def gateway_merchant(client: TestClient[Any], admin_headers: dict[str, str]) -> dict[str, Any]:
    """A merchant of this module's own, so that its inbox counts are this module's."""
    return create_merchant(client, "Webhook edge")


def _capture(order_id: str | None = None, amount: int = 1500) -> dict[str, Any]:
    return {
        "id": f"pi_{uuid.uuid4().hex[:16]}",
        "object": "payment_intent",
        "amount_received": amount,
        "currency": "eur",
        "metadata": {"order_id": order_id} if order_id else {},
    }


def _standard_capture() -> dict[str, Any]:
    return {"gateway_ref": f"pay_{uuid.uuid4().hex[:16]}", "amount": 1500, "currency": "EUR"}


def _post(client: TestClient[Any], delivery: Delivery) -> Any:
    return client.post(delivery.path, content=delivery.body, headers=delivery.headers)


def _all_inbox_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM webhook_inbox").fetchone()
    assert row is not None
    return int(row[0])


def _one_byte_changed(body: bytes) -> bytes:
    index = body.index(b"1500")  # an amount digit: still valid JSON, another amount
    return body[:index] + b"2" + body[index + 1 :]


# --- accepted, duplicate, ignored -------------------------------------------------------


def test_a_signed_stripe_capture_is_accepted_and_its_verified_body_stored_once(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str
) -> None:
    delivery = stripe_delivery(gateway_merchant, "payment_intent.succeeded", _capture())
    response = _post(client, delivery)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted"}
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT gateway, body, state FROM webhook_inbox WHERE merchant_id = %s AND event_id = %s",
            (gateway_merchant["merchant_id"], delivery.event_id),
        ).fetchone()
    assert row is not None
    assert (row[0], bytes(row[1])) == ("stripe", delivery.body)


def test_a_delivery_signed_by_the_standardwebhooks_package_is_accepted_with_its_webhook_id(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str
) -> None:
    delivery = standard_delivery(gateway_merchant, "payment.captured", _standard_capture())
    response = _post(client, delivery)
    assert response.json() == {"status": "accepted"}, response.text
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT headers FROM webhook_inbox WHERE merchant_id = %s AND gateway = 'standard' AND event_id = %s",
            (gateway_merchant["merchant_id"], delivery.event_id),
        ).fetchone()
    assert row == ({"webhook-id": delivery.event_id},)


@pytest.mark.parametrize("gateway", ["stripe", "standard"])
def test_second_delivery_of_a_webhook_is_reported_as_duplicate_and_stored_once(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str, gateway: str
) -> None:
    if gateway == "stripe":
        delivery = stripe_delivery(gateway_merchant, "payment_intent.succeeded", _capture())
    else:
        delivery = standard_delivery(gateway_merchant, "payment.captured", _standard_capture())
    before = inbox_rows(database_url, gateway_merchant["merchant_id"])
    assert _post(client, delivery).json() == {"status": "accepted"}
    assert _post(client, delivery).json() == {"status": "duplicate"}
    assert inbox_rows(database_url, gateway_merchant["merchant_id"]) == before + 1


def test_a_redelivery_with_a_new_signature_and_timestamp_is_still_a_duplicate(
    client: TestClient[Any], gateway_merchant: dict[str, Any]
) -> None:
    _, body = stripe_body("payment_intent.succeeded", _capture())
    secret = gateway_merchant["webhook_secrets"]["stripe"]
    path = f"/v1/webhooks/{gateway_merchant['merchant_id']}/stripe"
    first = client.post(path, content=body, headers=stripe_headers(body, secret, int(time.time()) - 60))
    again = client.post(path, content=body, headers=stripe_headers(body, secret))
    assert (first.json(), again.json()) == ({"status": "accepted"}, {"status": "duplicate"})


def test_an_event_type_daybook_does_not_act_on_is_ignored_and_stores_nothing(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str
) -> None:
    before = _all_inbox_rows(database_url)
    stripe = stripe_delivery(gateway_merchant, "customer.created", {"id": "cus_1", "object": "customer"})
    standard = standard_delivery(gateway_merchant, "invoice.paid", {"gateway_ref": "x", "currency": "EUR"})
    assert _post(client, stripe).json() == {"status": "ignored"}
    assert _post(client, standard).json() == {"status": "ignored"}
    assert _all_inbox_rows(database_url) == before


def test_a_body_of_exactly_256_kib_is_accepted(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str
) -> None:
    _, body = stripe_body("payment_intent.succeeded", _capture())
    body += b" " * (WEBHOOK_BODY_LIMIT - len(body))
    headers = stripe_headers(body, gateway_merchant["webhook_secrets"]["stripe"])
    response = client.post(f"/v1/webhooks/{gateway_merchant['merchant_id']}/stripe", content=body, headers=headers)
    assert response.json() == {"status": "accepted"}, response.text


# --- rejected: nothing stored ----------------------------------------------------------


def _stripe_forgeries(merchant: dict[str, Any]) -> dict[str, tuple[bytes, dict[str, str]]]:
    _, body = stripe_body("payment_intent.succeeded", _capture())
    secret = merchant["webhook_secrets"]["stripe"]
    now = int(time.time())
    return {
        "signed with another secret": (body, stripe_headers(body, generate_secret("stripe"))),
        "body changed by one byte": (_one_byte_changed(body), stripe_headers(body, secret)),
        "timestamp 301 s old": (body, stripe_headers(body, secret, now - 301)),
        # Ahead by more than 301 s: it is sent a while after it was made, and only gets closer.
        "timestamp 330 s ahead": (body, stripe_headers(body, secret, now + 330)),
        "no signature header": (body, {"Content-Type": "application/json"}),
        "malformed signature header": (body, {"Stripe-Signature": f"t={now},v1=zz"}),
    }


def _standard_forgeries(merchant: dict[str, Any]) -> dict[str, tuple[bytes, dict[str, str]]]:
    body = standard_body("payment.captured", _standard_capture())
    secret = merchant["webhook_secrets"]["standard"]
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    signed = standard_headers(body, secret, msg_id)

    def without(name: str) -> dict[str, str]:
        return {key: value for key, value in signed.items() if key != name}

    return {
        "signed with another secret": (body, standard_headers(body, generate_secret("standard"), msg_id)),
        "body changed by one byte": (_one_byte_changed(body), signed),
        "webhook-id changed": (body, {**signed, "webhook-id": msg_id + "x"}),
        "timestamp 301 s old": (body, standard_headers(body, secret, msg_id, now - 301)),
        "timestamp 330 s ahead": (body, standard_headers(body, secret, msg_id, now + 330)),
        "no webhook-signature": (body, without("webhook-signature")),
        "no webhook-id": (body, without("webhook-id")),
        "no webhook-timestamp": (body, without("webhook-timestamp")),
    }


@pytest.mark.parametrize(("gateway", "forgeries"), [("stripe", _stripe_forgeries), ("standard", _standard_forgeries)])
def test_every_bad_signature_is_401_invalid_signature_with_one_body_and_stores_nothing(
    client: TestClient[Any],
    gateway_merchant: dict[str, Any],
    database_url: str,
    gateway: str,
    forgeries: Callable[[dict[str, Any]], dict[str, tuple[bytes, dict[str, str]]]],
) -> None:
    before = _all_inbox_rows(database_url)
    bodies = {}
    for cause, (body, headers) in forgeries(gateway_merchant).items():
        response = client.post(
            f"/v1/webhooks/{gateway_merchant['merchant_id']}/{gateway}", content=body, headers=headers
        )
        assert response.status_code == 401, (cause, response.text)
        problem = response.json()
        assert problem["code"] == "invalid_signature", cause
        del problem["request_id"]
        bodies[cause] = problem
    assert len({json.dumps(problem, sort_keys=True) for problem in bodies.values()}) == 1, bodies
    assert _all_inbox_rows(database_url) == before


def test_a_timestamp_within_the_tolerance_either_way_is_accepted(
    client: TestClient[Any], gateway_merchant: dict[str, Any]
) -> None:
    secret = gateway_merchant["webhook_secrets"]["stripe"]
    path = f"/v1/webhooks/{gateway_merchant['merchant_id']}/stripe"
    for offset in (-290, 290):
        _, body = stripe_body("payment_intent.succeeded", _capture())
        response = client.post(path, content=body, headers=stripe_headers(body, secret, int(time.time()) + offset))
        assert response.json() == {"status": "accepted"}, (offset, response.text)


def test_an_unknown_merchant_is_404_and_stores_nothing(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str
) -> None:
    before = _all_inbox_rows(database_url)
    _, body = stripe_body("payment_intent.succeeded", _capture())
    headers = stripe_headers(body, gateway_merchant["webhook_secrets"]["stripe"])
    response = client.post(f"/v1/webhooks/{uuid.uuid4()}/stripe", content=body, headers=headers)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert _all_inbox_rows(database_url) == before


def test_an_unknown_gateway_is_404(client: TestClient[Any], gateway_merchant: dict[str, Any]) -> None:
    _, body = stripe_body("payment_intent.succeeded", _capture())
    headers = stripe_headers(body, gateway_merchant["webhook_secrets"]["stripe"])
    response = client.post(f"/v1/webhooks/{gateway_merchant['merchant_id']}/paypal", content=body, headers=headers)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_a_body_over_256_kib_is_413_and_stores_nothing(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str
) -> None:
    before = _all_inbox_rows(database_url)
    _, body = stripe_body("payment_intent.succeeded", _capture())
    body += b" " * (WEBHOOK_BODY_LIMIT + 1 - len(body))
    headers = stripe_headers(body, gateway_merchant["webhook_secrets"]["stripe"])
    response = client.post(f"/v1/webhooks/{gateway_merchant['merchant_id']}/stripe", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert _all_inbox_rows(database_url) == before


@pytest.mark.parametrize("gateway", ["stripe", "standard"])
def test_malformed_json_with_a_valid_signature_is_400_malformed_and_stores_nothing(
    client: TestClient[Any], gateway_merchant: dict[str, Any], database_url: str, gateway: str
) -> None:
    before = _all_inbox_rows(database_url)
    body = b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {'
    secret = gateway_merchant["webhook_secrets"][gateway]
    if gateway == "stripe":
        headers = stripe_headers(body, secret)
    else:
        headers = standard_headers(body, secret, f"msg_{uuid.uuid4().hex}")
    response = client.post(f"/v1/webhooks/{gateway_merchant['merchant_id']}/{gateway}", content=body, headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, "malformed"), response.text
    assert _all_inbox_rows(database_url) == before


def test_a_capture_without_its_amount_is_400_malformed(
    client: TestClient[Any], gateway_merchant: dict[str, Any]
) -> None:
    obj = _capture()
    del obj["amount_received"]
    response = _post(client, stripe_delivery(gateway_merchant, "payment_intent.succeeded", obj))
    assert (response.status_code, response.json()["code"]) == (400, "malformed")


# --- rotation, Redis outage, metrics ---------------------------------------------------


@pytest.mark.parametrize("gateway", ["stripe", "standard"])
def test_old_and_new_secret_are_both_accepted_during_rotation(
    client: TestClient[Any], admin_headers: dict[str, str], gateway: str
) -> None:
    created = client.post("/v1/admin/merchants", json={"name": "Rotating"}, headers=admin_headers).json()
    old_secret = created["webhook_secrets"][gateway]

    def signed_with(secret: str) -> Delivery:
        merchant = {**created, "webhook_secrets": {gateway: secret}}
        if gateway == "stripe":
            return stripe_delivery(merchant, "payment_intent.succeeded", _capture())
        return standard_delivery(merchant, "payment.captured", _standard_capture())

    assert _post(client, signed_with(old_secret)).json() == {"status": "accepted"}  # the old secret is now cached
    rotated = client.post(
        f"/v1/admin/merchants/{created['merchant_id']}/webhook-secrets/{gateway}/rotate", headers=admin_headers
    )
    assert rotated.status_code == 201, rotated.text
    new_secret = rotated.json()["secret"]
    assert _post(client, signed_with(new_secret)).json() == {"status": "accepted"}
    assert _post(client, signed_with(old_secret)).json() == {"status": "accepted"}
    assert _post(client, signed_with(generate_secret(gateway))).status_code == 401


@pytest.fixture
def client_without_redis(api_settings: Settings, database_url: str) -> Iterator[TestClient[Any]]:
    """The API with its Redis on a port where nothing listens."""
    with TestClient(create_app(api_settings, database_url, CLOSED_REDIS_URL), raise_server_exceptions=False) as client:
        yield client


def test_with_redis_down_a_delivery_is_still_accepted_durably_and_the_sweeper_sends_it_later(
    client_without_redis: TestClient[Any],
    gateway_merchant: dict[str, Any],
    database_url: str,
    settings: Settings,
) -> None:
    delivery = stripe_delivery(gateway_merchant, "payment_intent.succeeded", _capture())
    assert _post(client_without_redis, delivery).json() == {"status": "accepted"}
    assert _post(client_without_redis, delivery).json() == {"status": "duplicate"}  # PostgreSQL alone knows
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT inbox_id, state FROM webhook_inbox WHERE merchant_id = %s AND event_id = %s",
            (gateway_merchant["merchant_id"], delivery.event_id),
        ).fetchone()
    assert row is not None
    inbox_id, state = row
    assert state == "pending"  # no message reached a worker
    pool = connection_pool(database_url, settings, size=1, name="test-sweep")
    broker = StubBroker()
    broker.declare_queue("default")
    try:
        swept = sweep_pending(pool, broker, delay_s=0)
    finally:
        pool.close()
    assert inbox_id in swept


def _counter(client: TestClient[Any], gateway: str, outcome: str) -> float:
    text = client.get("/metrics").text
    pattern = rf'^daybook_webhooks_total\{{gateway="{gateway}",outcome="{outcome}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_webhook_outcomes_are_counted_in_the_metrics(client: TestClient[Any], gateway_merchant: dict[str, Any]) -> None:
    outcomes = ("accepted", "duplicate", "invalid_signature")
    before = {outcome: _counter(client, "stripe", outcome) for outcome in outcomes}
    delivery = stripe_delivery(gateway_merchant, "payment_intent.succeeded", _capture())
    _post(client, delivery)
    _post(client, delivery)
    _post(client, Delivery(delivery.path, delivery.body + b" ", delivery.headers, delivery.event_id))
    after = {outcome: _counter(client, "stripe", outcome) for outcome in outcomes}
    assert {outcome: after[outcome] - before[outcome] for outcome in outcomes} == dict.fromkeys(outcomes, 1.0)
