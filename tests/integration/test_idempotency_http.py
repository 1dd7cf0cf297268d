"""``Idempotency-Key`` on merchant POSTs, as CONTRACT.md states it (Conventions)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from adapters import idempotency_keys
from api.idempotency import request_hash
from tests.integration.conftest import create_merchant

pytestmark = pytest.mark.usefixtures("projections_running")


def _sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


def _key() -> str:
    return f"key-{uuid.uuid4().hex}"


def _order(sku: str, quantity: int = 1) -> dict[str, Any]:
    return {
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": {"amount": 250, "currency": "EUR"}}],
        "currency": "EUR",
    }


def _stock(client: TestClient[Any], headers: dict[str, str], quantity: int) -> str:
    sku = _sku()
    response = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": quantity}, headers=headers)
    assert response.status_code == 201, response.text
    return sku


def _level_now(client: TestClient[Any], headers: dict[str, str], sku: str) -> tuple[int, int, int]:
    response = client.get(f"/v1/inventory/{sku}", params={"as_of": datetime.now(UTC).isoformat()}, headers=headers)
    assert response.status_code == 200, response.text
    level = response.json()
    return level["on_hand"], level["reserved"], level["available"]


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.fixture
def lonely(client: TestClient[Any], admin_headers: dict[str, str]) -> dict[str, Any]:
    """A merchant of the test's own: its order list holds only what the test placed."""
    return create_merchant(client, "Idempotent merchant")


def _orders_listed(client: TestClient[Any], headers: dict[str, str], position: str) -> list[dict[str, Any]]:
    response = client.get("/v1/orders", params={"limit": 100}, headers={**headers, "X-Daybook-Min-Position": position})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_repeating_an_order_with_the_same_key_and_body_replays_the_answer_and_places_one_order(
    client: TestClient[Any], lonely: dict[str, Any]
) -> None:
    headers = lonely["headers"]
    sku = _stock(client, headers, 5)
    keyed = {**headers, "Idempotency-Key": _key()}
    first = client.post("/v1/orders", json=_order(sku, 2), headers=keyed)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post("/v1/orders", json=_order(sku, 2), headers={**keyed, "X-Request-ID": "the-retry"})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["x-daybook-position"] == first.headers["x-daybook-position"]
    assert again.headers["x-request-id"] == "the-retry"
    assert _level_now(client, headers, sku) == (5, 2, 3)
    listed = _orders_listed(client, headers, first.headers["x-daybook-position"])
    assert [order["id"] for order in listed] == [first.json()["id"]]


def test_repeating_a_receipt_with_the_same_key_receives_the_stock_once(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    keyed = {**merchant_headers, "Idempotency-Key": _key()}
    answers = [client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 4}, headers=keyed) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, "true", "true"]
    assert answers[1].json() == answers[0].json() == answers[2].json()
    assert _level_now(client, merchant_headers, sku) == (4, 0, 4)


def test_repeating_a_cancel_with_the_same_key_replays_the_answer(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order = client.post("/v1/orders", json=_order(sku), headers=merchant_headers).json()
    keyed = {**merchant_headers, "Idempotency-Key": _key()}
    first = client.post(f"/v1/orders/{order['id']}/cancel", headers=keyed)
    again = client.post(f"/v1/orders/{order['id']}/cancel", headers=keyed)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["status"] == "cancelled"


def test_same_key_with_a_different_body_is_409_idempotency_key_reused_and_changes_nothing(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 5)
    keyed = {**merchant_headers, "Idempotency-Key": _key()}
    assert client.post("/v1/orders", json=_order(sku, 1), headers=keyed).status_code == 201
    reused = client.post("/v1/orders", json=_order(sku, 2), headers=keyed)
    _problem(reused, 409, "idempotency_key_reused")
    assert "idempotent-replayed" not in reused.headers
    assert _level_now(client, merchant_headers, sku) == (5, 1, 4)


def test_same_key_on_another_route_is_409_idempotency_key_reused(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    keyed = {**merchant_headers, "Idempotency-Key": _key()}
    assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 1}, headers=keyed).status_code == 201
    other = client.post(f"/v1/inventory/{sku}/adjustments", json={"quantity": 1}, headers=keyed)
    _problem(other, 409, "idempotency_key_reused")
    assert _level_now(client, merchant_headers, sku) == (1, 0, 1)


def test_out_of_stock_answer_is_replayed_even_after_stock_arrives(
    client: TestClient[Any], lonely: dict[str, Any]
) -> None:
    headers = lonely["headers"]
    sku = _stock(client, headers, 1)
    keyed = {**headers, "Idempotency-Key": _key()}
    first = client.post("/v1/orders", json=_order(sku, 3), headers=keyed)
    body = _problem(first, 409, "out_of_stock")
    assert body["lines"] == [{"sku": sku, "requested": 3, "available": 1}]
    restock = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 10}, headers=headers)
    assert restock.status_code == 201
    again = client.post("/v1/orders", json=_order(sku, 3), headers=keyed)
    assert again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == body
    assert _level_now(client, headers, sku) == (11, 0, 11)
    assert _orders_listed(client, headers, restock.headers["x-daybook-position"]) == []


@pytest.mark.parametrize("length", [256, 1_000])
def test_key_longer_than_255_characters_is_400_and_nothing_is_done(
    client: TestClient[Any], merchant_headers: dict[str, str], length: int
) -> None:
    sku = _stock(client, merchant_headers, 1)
    response = client.post(
        "/v1/orders", json=_order(sku), headers={**merchant_headers, "Idempotency-Key": "k" * length}
    )
    _problem(response, 400, "invalid_request")
    assert _level_now(client, merchant_headers, sku) == (1, 0, 1)


def test_empty_key_is_400(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 1)
    response = client.post("/v1/orders", json=_order(sku), headers={**merchant_headers, "Idempotency-Key": ""})
    _problem(response, 400, "invalid_request")
    assert _level_now(client, merchant_headers, sku) == (1, 0, 1)


def test_key_of_255_characters_is_accepted(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 1)
    keyed = {**merchant_headers, "Idempotency-Key": uuid.uuid4().hex + "k" * 223}
    assert len(keyed["Idempotency-Key"]) == 255
    assert client.post("/v1/orders", json=_order(sku), headers=keyed).status_code == 201
    assert client.post("/v1/orders", json=_order(sku), headers=keyed).headers["idempotent-replayed"] == "true"


def test_keys_of_different_merchants_do_not_collide(
    client: TestClient[Any], merchant_headers: dict[str, str], lonely: dict[str, Any]
) -> None:
    key = _key()
    mine, theirs = _stock(client, merchant_headers, 1), _stock(client, lonely["headers"], 1)
    first = client.post("/v1/orders", json=_order(mine), headers={**merchant_headers, "Idempotency-Key": key})
    second = client.post("/v1/orders", json=_order(theirs), headers={**lonely["headers"], "Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert _level_now(client, lonely["headers"], theirs) == (1, 1, 0)


def test_auditors_refused_post_does_not_use_up_the_merchants_key(
    client: TestClient[Any], merchant_headers: dict[str, str], auditor_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    key = _key()
    refused = client.post("/v1/orders", json=_order(sku), headers={**auditor_headers, "Idempotency-Key": key})
    _problem(refused, 403, "forbidden")
    placed = client.post("/v1/orders", json=_order(sku), headers={**merchant_headers, "Idempotency-Key": key})
    assert placed.status_code == 201, placed.text
    assert "idempotent-replayed" not in placed.headers
    assert _level_now(client, merchant_headers, sku) == (1, 1, 0)


def test_same_key_while_the_first_request_still_runs_is_409_idempotency_key_in_use(
    client: TestClient[Any], lonely: dict[str, Any], database_url: str
) -> None:
    headers = lonely["headers"]
    sku = _stock(client, headers, 1)
    key = _key()
    body = json.dumps(_order(sku)).encode()
    # The first request claimed the key and has not answered yet (it is still running, or its process died).
    with psycopg.connect(database_url, autocommit=True) as conn:
        claimed = idempotency_keys.claim(
            conn,
            uuid.UUID(lonely["merchant_id"]),
            key,
            request_hash("POST", "/v1/orders", b"", body),
            timedelta(hours=24),
        )
    assert claimed
    keyed = {**headers, "Idempotency-Key": key, "Content-Type": "application/json"}
    _problem(client.post("/v1/orders", content=body, headers=keyed), 409, "idempotency_key_in_use")
    _problem(client.post("/v1/orders", json=_order(sku, 2), headers=keyed), 409, "idempotency_key_reused")
    assert _level_now(client, headers, sku) == (1, 0, 1)


_LOSE_THE_ANSWER = (
    "UPDATE idempotency_keys SET state = 'running', status_code = NULL, headers = NULL, body = NULL, "
    "locked_until = now() - interval '1 second' WHERE merchant_id = %s AND idempotency_key = %s"
)
_AGE_PAST_THE_TTL = (
    "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
    "WHERE merchant_id = %s AND idempotency_key = %s"
)


def _rewrite_key(database_url: str, statement: str, merchant_id: str, key: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute(statement, (uuid.UUID(merchant_id), key)).rowcount == 1  # type: ignore[arg-type]


def _keyed_order(client: TestClient[Any], headers: dict[str, str], stock: int) -> tuple[str, dict[str, str], Any]:
    """A SKU of ``stock`` units and a keyed order of two of them: (sku, keyed headers, answer)."""
    sku = _stock(client, headers, stock)
    keyed = {**headers, "Idempotency-Key": _key()}
    first = client.post("/v1/orders", json=_order(sku, 2), headers=keyed)
    assert first.status_code == 201, first.text
    return sku, keyed, first


def _retried_after_losing_the_answer(
    client: TestClient[Any], lonely: dict[str, Any], database_url: str, keyed: dict[str, str], body: dict[str, Any]
) -> Any:
    # The process died after the commit and before storing the answer; its key lock has run out.
    _rewrite_key(database_url, _LOSE_THE_ANSWER, lonely["merchant_id"], keyed["Idempotency-Key"])
    retry = client.post("/v1/orders", json=body, headers=keyed)
    assert retry.status_code == 201, retry.text
    return retry


def test_retry_after_the_answer_was_lost_returns_the_order_the_first_run_placed(
    client: TestClient[Any], lonely: dict[str, Any], database_url: str
) -> None:
    headers = lonely["headers"]
    sku, keyed, first = _keyed_order(client, headers, 5)
    retry = _retried_after_losing_the_answer(client, lonely, database_url, keyed, _order(sku, 2))
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["status"] == "reserved"
    assert int(retry.headers["x-daybook-position"]) >= int(first.headers["x-daybook-position"])
    assert _level_now(client, headers, sku) == (5, 2, 3)
    assert [o["id"] for o in _orders_listed(client, headers, retry.headers["x-daybook-position"])] == [
        first.json()["id"]
    ]
    assert client.post("/v1/orders", json=_order(sku, 2), headers=keyed).headers["idempotent-replayed"] == "true"


def test_retry_after_the_answer_was_lost_and_the_stock_was_released_and_sold_returns_that_order(
    client: TestClient[Any], lonely: dict[str, Any], database_url: str
) -> None:
    headers = lonely["headers"]
    sku, keyed, first = _keyed_order(client, headers, 2)
    order_id = first.json()["id"]
    cancelled = client.post(f"/v1/orders/{order_id}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    other = client.post("/v1/orders", json=_order(sku, 2), headers=headers)
    assert other.status_code == 201, other.text
    retry = _retried_after_losing_the_answer(client, lonely, database_url, keyed, _order(sku, 2))
    assert (retry.json()["id"], retry.json()["status"]) == (order_id, "cancelled")
    assert _level_now(client, headers, sku) == (2, 2, 0)


def test_key_reused_for_another_order_after_its_record_expired_is_409_idempotency_key_reused(
    client: TestClient[Any], lonely: dict[str, Any], database_url: str
) -> None:
    headers = lonely["headers"]
    sku = _stock(client, headers, 5)
    keyed = {**headers, "Idempotency-Key": _key()}
    first = client.post("/v1/orders", json=_order(sku, 1), headers=keyed)
    assert first.status_code == 201, first.text
    _rewrite_key(database_url, _AGE_PAST_THE_TTL, lonely["merchant_id"], keyed["Idempotency-Key"])
    other = client.post("/v1/orders", json=_order(sku, 3), headers=keyed)
    _problem(other, 409, "idempotency_key_reused")
    assert _level_now(client, headers, sku) == (5, 1, 4)
