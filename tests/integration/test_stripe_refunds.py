"""Real Stripe refunds end to end (issue 11, item 12): only succeeded refunds count, a refund
that fails later is reversed, and a ``charge.refunded`` without its refunds list is read from
the charge's ``amount_refunded``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from adapters.settings import Settings
from domain.gateway import payment_id
from tests.integration.conftest import create_merchant
from tests.integration.inbox_running import InboxDrain
from tests.integration.serving import wait_for
from tests.integration.webhook_running import projections_caught_up
from tests.integration.webhook_senders import stripe_delivery

pytestmark = pytest.mark.usefixtures("projections_running")


@pytest.fixture(scope="module")
def refunder(client: TestClient[Any]) -> dict[str, Any]:
    return create_merchant(client, "Stripe refunds")


@pytest.fixture(scope="module")
def drain(database_url: str, api_settings: Settings) -> Iterator[InboxDrain]:
    inbox = InboxDrain(database_url, api_settings)
    yield inbox
    inbox.close()


def _paid_order(client: TestClient[Any], merchant: dict[str, Any], drain: InboxDrain) -> tuple[dict[str, Any], str]:
    headers = merchant["headers"]
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 5}, headers=headers).status_code == 201
    line = {"sku": sku, "quantity": 1, "unit_price": {"amount": 1000, "currency": "EUR"}}
    order = client.post("/v1/orders", json={"lines": [line], "currency": "EUR"}, headers=headers).json()
    intent = f"pi_{uuid.uuid4().hex[:12]}"
    obj = {"id": intent, "currency": "eur", "amount_received": 1000, "metadata": {"order_id": order["id"]}}
    _deliver(client, drain, merchant, "payment_intent.succeeded", obj)
    return order, intent


def _deliver(
    client: TestClient[Any], drain: InboxDrain, merchant: dict[str, Any], event_type: str, obj: dict[str, Any]
) -> None:
    delivery = stripe_delivery(merchant, event_type, obj)
    answer = client.post(delivery.path, content=delivery.body, headers=delivery.headers)
    assert answer.status_code == 200, answer.text
    report = drain.drain(merchant["merchant_id"])
    assert not report.parked, report.parked


def _read(client: TestClient[Any], merchant: dict[str, Any], database_url: str, path: str) -> dict[str, Any]:
    wait_for(lambda: projections_caught_up(database_url), timeout_s=30, what="projections to reach the head")
    response = client.get(path, headers=merchant["headers"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_stripe_refund_that_fails_later_is_reversed_on_the_payment_and_the_order(
    client: TestClient[Any], refunder: dict[str, Any], drain: InboxDrain, database_url: str
) -> None:
    order, intent = _paid_order(client, refunder, drain)
    charge = {"id": f"ch_{intent[3:]}", "payment_intent": intent, "currency": "eur", "metadata": {}}
    refunds = [
        {"id": "re_ok", "amount": 300, "status": "succeeded"},
        {"id": "re_wait", "amount": 200, "status": "pending"},
    ]
    _deliver(client, drain, refunder, "charge.refunded", {**charge, "refunds": {"data": refunds}})
    payment_path = f"/v1/payments/{payment_id(uuid.UUID(refunder['merchant_id']), 'stripe', intent)}"
    assert _read(client, refunder, database_url, payment_path)["amount_refunded"] == 300
    assert _read(client, refunder, database_url, f"/v1/orders/{order['id']}")["status"] == "partially_refunded"

    failed = {"id": "re_ok", "amount": 300, "status": "failed", "currency": "eur", "payment_intent": intent}
    _deliver(client, drain, refunder, "charge.refund.updated", {**failed, "charge": charge["id"]})
    payment = _read(client, refunder, database_url, payment_path)
    assert (payment["status"], payment["amount_refunded"]) == ("captured", 0)
    served = _read(client, refunder, database_url, f"/v1/orders/{order['id']}")
    assert (served["status"], served["amount_refunded"]["amount"]) == ("paid", 0)


def test_a_charge_refunded_without_its_refunds_list_is_counted_from_amount_refunded(
    client: TestClient[Any], refunder: dict[str, Any], drain: InboxDrain, database_url: str
) -> None:
    order, intent = _paid_order(client, refunder, drain)
    charge = {"id": f"ch_{intent[3:]}", "payment_intent": intent, "currency": "eur", "metadata": {}}
    for total in (250, 1000):
        _deliver(client, drain, refunder, "charge.refunded", {**charge, "amount_refunded": total})
    served = _read(client, refunder, database_url, f"/v1/orders/{order['id']}")
    assert (served["status"], served["amount_refunded"]["amount"]) == ("refunded", 1000)
    issues = _read(client, refunder, database_url, "/v1/reconciliation/issues")["data"]
    assert not [issue for issue in issues if issue.get("order_id") == order["id"]]
