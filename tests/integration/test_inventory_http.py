"""``/v1/inventory`` over HTTP as CONTRACT.md states it: validation, levels, lists, as_of, auth."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import TestClient

from adapters.settings import Settings
from api.app import create_app
from tests.integration.conftest import create_merchant

pytestmark = pytest.mark.usefixtures("projections_running")


def _sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


def _receive(client: TestClient[Any], headers: dict[str, str], sku: str, quantity: int) -> dict[str, Any]:
    response = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": quantity}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    body["position"] = response.headers["x-daybook-position"]
    return body


def _hold(client: TestClient[Any], headers: dict[str, str], sku: str, quantity: int) -> dict[str, Any]:
    order = {
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": {"amount": 100, "currency": "EUR"}}],
        "currency": "EUR",
    }
    response = client.post("/v1/orders", json=order, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    body["position"] = response.headers["x-daybook-position"]
    return body


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.fixture(scope="module")
def fresh_merchant_headers(client: TestClient[Any], admin_headers: dict[str, str]) -> dict[str, str]:
    """A merchant of its own, so that its lists hold only what a test put there."""
    headers: dict[str, str] = create_merchant(client, "Inventory lists")["headers"]
    return headers


# Receipts and adjustments.


def test_receipt_answers_201_with_the_level_and_a_position(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    response = client.post(
        f"/v1/inventory/{sku}/receipts", json={"quantity": 7, "reference": "PO-1"}, headers=merchant_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert {k: body[k] for k in ("sku", "on_hand", "reserved", "available")} == {
        "sku": sku,
        "on_hand": 7,
        "reserved": 0,
        "available": 7,
    }
    assert body["updated_at"].endswith("Z") or body["updated_at"].endswith("+00:00")
    assert int(response.headers["x-daybook-position"]) > 0
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("quantity", [0, -1])
def test_receipt_of_less_than_one_unit_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], quantity: int
) -> None:
    sku = _sku()
    response = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": quantity}, headers=merchant_headers)
    _problem(response, 400, "invalid_request")
    _problem(client.get(f"/v1/inventory/{sku}", headers=merchant_headers), 404, "not_found")


def test_receipt_with_an_unknown_field_is_400(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    response = client.post(
        f"/v1/inventory/{_sku()}/receipts", json={"quantity": 1, "colour": "red"}, headers=merchant_headers
    )
    _problem(response, 400, "invalid_request")


@pytest.mark.parametrize("sku", ["has%20space", "semi%3Bcolon", "x" * 65, "%C3%A9t%C3%A9"])
def test_sku_outside_the_allowed_characters_or_length_is_400_on_every_inventory_route(
    client: TestClient[Any], merchant_headers: dict[str, str], sku: str
) -> None:
    _problem(
        client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 1}, headers=merchant_headers),
        400,
        "invalid_request",
    )
    _problem(
        client.post(f"/v1/inventory/{sku}/adjustments", json={"delta": 1, "reason": "count"}, headers=merchant_headers),
        400,
        "invalid_request",
    )
    _problem(client.get(f"/v1/inventory/{sku}", headers=merchant_headers), 400, "invalid_request")


def test_sku_of_64_allowed_characters_is_accepted(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = ("A.b_C-9" + uuid.uuid4().hex * 2)[:64]
    assert _receive(client, merchant_headers, sku, 1)["sku"] == sku


def test_adjustment_changes_on_hand_and_answers_with_a_position(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 10)
    response = client.post(
        f"/v1/inventory/{sku}/adjustments", json={"delta": -3, "reason": "damaged"}, headers=merchant_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["on_hand"], body["reserved"], body["available"]) == (7, 0, 7)
    assert int(response.headers["x-daybook-position"]) > 0


def test_adjustment_of_zero_is_400(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 10)
    response = client.post(
        f"/v1/inventory/{sku}/adjustments", json={"delta": 0, "reason": "count"}, headers=merchant_headers
    )
    _problem(response, 400, "invalid_request")


def test_adjustment_without_a_reason_or_with_an_unknown_field_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 10)
    for body in ({"delta": 1}, {"delta": 1, "reason": ""}, {"delta": 1, "reason": "count", "by": "me"}):
        response = client.post(f"/v1/inventory/{sku}/adjustments", json=body, headers=merchant_headers)
        _problem(response, 400, "invalid_request")


def test_adjustment_below_what_is_reserved_is_409_insufficient_stock_and_changes_nothing(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 10)
    _hold(client, merchant_headers, sku, 6)
    response = client.post(
        f"/v1/inventory/{sku}/adjustments", json={"delta": -5, "reason": "shrinkage"}, headers=merchant_headers
    )
    _problem(response, 409, "insufficient_stock")
    level = client.get(f"/v1/inventory/{sku}", params={"as_of": _now()}, headers=merchant_headers).json()
    assert (level["on_hand"], level["reserved"], level["available"]) == (10, 6, 4)
    # Down to exactly what is reserved is allowed.
    allowed = client.post(
        f"/v1/inventory/{sku}/adjustments", json={"delta": -4, "reason": "shrinkage"}, headers=merchant_headers
    )
    assert allowed.status_code == 201, allowed.text
    assert (allowed.json()["on_hand"], allowed.json()["available"]) == (6, 0)


def test_adjustment_of_a_sku_never_received_is_404(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    response = client.post(
        f"/v1/inventory/{_sku()}/adjustments", json={"delta": 5, "reason": "count"}, headers=merchant_headers
    )
    _problem(response, 404, "not_found")


# Levels.


def test_unknown_sku_is_404(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    _problem(client.get(f"/v1/inventory/{_sku()}", headers=merchant_headers), 404, "not_found")


def test_another_merchants_sku_is_404(
    client: TestClient[Any], merchant_headers: dict[str, str], fresh_merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    received = _receive(client, merchant_headers, sku, 3)
    wait = {**fresh_merchant_headers, "X-Daybook-Min-Position": received["position"]}
    _problem(client.get(f"/v1/inventory/{sku}", headers=wait), 404, "not_found")


def test_level_with_min_position_reflects_the_receipt_and_the_hold(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 5)
    order = _hold(client, merchant_headers, sku, 2)
    response = client.get(
        f"/v1/inventory/{sku}", headers={**merchant_headers, "X-Daybook-Min-Position": order["position"]}
    )
    assert response.status_code == 200, response.text
    level = response.json()
    assert (level["sku"], level["on_hand"], level["reserved"], level["available"]) == (sku, 5, 2, 3)
    assert response.headers["x-request-id"]


def test_level_as_of_an_instant_before_a_receipt_shows_the_stock_of_then(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    first = _receive(client, merchant_headers, sku, 5)
    second = _receive(client, merchant_headers, sku, 3)
    assert second["on_hand"] == 8
    then = client.get(f"/v1/inventory/{sku}", params={"as_of": first["updated_at"]}, headers=merchant_headers)
    assert then.status_code == 200, then.text
    assert (then.json()["on_hand"], then.json()["available"]) == (5, 5)
    now = client.get(f"/v1/inventory/{sku}", params={"as_of": _now()}, headers=merchant_headers)
    assert now.json()["on_hand"] == 8


def test_level_as_of_an_instant_before_the_first_receipt_is_404(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 5)
    response = client.get(f"/v1/inventory/{sku}", params={"as_of": "2020-01-01T00:00:00Z"}, headers=merchant_headers)
    _problem(response, 404, "not_found")


@pytest.mark.parametrize("as_of", ["2030-01-01T00:00:00", "yesterday"])
def test_as_of_without_a_time_zone_or_not_a_time_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], as_of: str
) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 1)
    _problem(
        client.get(f"/v1/inventory/{sku}", params={"as_of": as_of}, headers=merchant_headers), 400, "invalid_request"
    )


# Lists.


def test_level_list_walks_every_sku_exactly_once_in_sku_order(
    client: TestClient[Any], fresh_merchant_headers: dict[str, str]
) -> None:
    skus = sorted(f"L-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(7))
    position = "0"
    for sku in skus:
        position = _receive(client, fresh_merchant_headers, sku, 1)["position"]
    headers = {**fresh_merchant_headers, "X-Daybook-Min-Position": position}
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get("/v1/inventory", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 3
        seen += [level["sku"] for level in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "the cursor does not advance"
    assert seen == skus
    assert pages == 3


def test_level_list_defaults_to_a_bounded_page(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    response = client.get("/v1/inventory", headers=merchant_headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"data", "next_cursor"}
    assert len(page["data"]) <= 50


@pytest.mark.parametrize("limit", ["0", "101", "-1", "many"])
def test_level_list_limit_outside_1_to_100_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], limit: str
) -> None:
    _problem(client.get("/v1/inventory", params={"limit": limit}, headers=merchant_headers), 400, "invalid_request")


@pytest.mark.parametrize("cursor", ["not-a-cursor!", "bm90IGpzb24", "WzEsMl0"])
def test_level_list_cursor_not_returned_by_the_api_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], cursor: str
) -> None:
    _problem(client.get("/v1/inventory", params={"cursor": cursor}, headers=merchant_headers), 400, "invalid_request")


# Roles and read-your-writes.


def test_auditor_reads_levels_but_is_forbidden_to_post(
    client: TestClient[Any], merchant_headers: dict[str, str], auditor_headers: dict[str, str]
) -> None:
    sku = _sku()
    received = _receive(client, merchant_headers, sku, 4)
    wait = {**auditor_headers, "X-Daybook-Min-Position": received["position"]}
    assert client.get(f"/v1/inventory/{sku}", headers=wait).json()["on_hand"] == 4
    assert client.get("/v1/inventory", headers=auditor_headers).status_code == 200
    _problem(
        client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 1}, headers=auditor_headers), 403, "forbidden"
    )
    _problem(
        client.post(f"/v1/inventory/{sku}/adjustments", json={"delta": -1, "reason": "x"}, headers=auditor_headers),
        403,
        "forbidden",
    )
    level = client.get(f"/v1/inventory/{sku}", params={"as_of": _now()}, headers=merchant_headers).json()
    assert level["on_hand"] == 4


@pytest.mark.parametrize("value", ["soon", "-1", "1.5", "", b"\xb2", "9" * 30])
def test_min_position_that_is_not_a_non_negative_integer_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], value: str | bytes
) -> None:
    sku = _sku()
    _receive(client, merchant_headers, sku, 1)
    headers: dict[str, Any] = {**merchant_headers, "X-Daybook-Min-Position": value}
    _problem(client.get(f"/v1/inventory/{sku}", headers=headers), 400, "invalid_request")
    _problem(client.get("/v1/inventory", headers=headers), 400, "invalid_request")


def test_min_position_never_reached_is_503_projection_lagging_after_the_wait(
    api_settings: Settings,
    database_url: str,
    redis_url: str,
    merchant_headers: dict[str, str],
) -> None:
    impatient = create_app(replace(api_settings, read_wait_max_seconds=0.5), database_url, redis_url)
    with TestClient(impatient, raise_server_exceptions=False) as other:
        sku = _sku()
        _receive(other, merchant_headers, sku, 1)
        headers = {**merchant_headers, "X-Daybook-Min-Position": str(10**15)}
        body = _problem(other.get(f"/v1/inventory/{sku}", headers=headers), 503, "projection_lagging")
        assert "retry" in body["detail"].lower()
        lagging = other.get("/v1/inventory", headers=headers)
        _problem(lagging, 503, "projection_lagging")
        assert lagging.headers["retry-after"]


def test_request_id_sent_by_the_client_is_echoed_on_successes_and_problems(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    headers = {**merchant_headers, "X-Request-ID": "inv-trace-42"}
    created = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 1}, headers=headers)
    missing = client.get(f"/v1/inventory/{_sku()}", headers=headers)
    refused = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 0}, headers=headers)
    for response in (created, missing, refused):
        assert response.headers["x-request-id"] == "inv-trace-42"
    assert missing.json()["request_id"] == "inv-trace-42"
