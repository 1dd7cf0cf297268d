"""Orders and inventory over HTTP, through the group committer, on real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from adapters.settings import Settings
from api.app import create_app
from domain.commands import ApplyGatewayEvent
from domain.context import CommandContext
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.inventory import inventory_item_id
from tests.integration.conftest import create_merchant

pytestmark = pytest.mark.usefixtures("projections_running")


def _sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


def _order(sku: str, quantity: int = 1, amount: int = 500, currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    return {
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": {"amount": amount, "currency": currency}}],
        "currency": currency,
        **extra,
    }


def test_receipt_creates_the_level_and_answers_with_a_position(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    response = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 10}, headers=merchant_headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["sku"], body["on_hand"], body["reserved"], body["available"]) == (sku, 10, 0, 10)
    assert int(response.headers["x-daybook-position"]) > 0


def test_placing_an_order_holds_stock_and_read_your_writes_sees_it(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 5}, headers=merchant_headers)
    placed = client.post("/v1/orders", json=_order(sku, 2), headers=merchant_headers)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "reserved"
    assert order["total"] == {"amount": 1000, "currency": "EUR"}
    wait = {**merchant_headers, "X-Daybook-Min-Position": placed.headers["x-daybook-position"]}
    level = client.get(f"/v1/inventory/{sku}", headers=wait).json()
    assert (level["on_hand"], level["reserved"], level["available"]) == (5, 2, 3)
    listed = client.get("/v1/orders?status=reserved&limit=100", headers=wait).json()
    assert order["id"] in [o["id"] for o in listed["data"]]


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def _stock(client: TestClient[Any], headers: dict[str, str], quantity: int, sku: str | None = None) -> str:
    sku = sku or _sku()
    response = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": quantity}, headers=headers)
    assert response.status_code == 201, response.text
    return sku


def _place(client: TestClient[Any], headers: dict[str, str], body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    response = client.post("/v1/orders", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json(), response.headers["x-daybook-position"]


def _level_now(client: TestClient[Any], headers: dict[str, str], sku: str) -> tuple[int, int, int]:
    """The level replayed from events right now (no projection involved)."""
    response = client.get(f"/v1/inventory/{sku}", params={"as_of": _now()}, headers=headers)
    assert response.status_code == 200, response.text
    level = response.json()
    return level["on_hand"], level["reserved"], level["available"]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _assert_held_for(order: dict[str, Any], hold_seconds: int) -> None:
    held_for = datetime.fromisoformat(order["hold_expires_at"]) - datetime.fromisoformat(order["created_at"])
    assert abs(held_for - timedelta(seconds=hold_seconds)) < timedelta(seconds=1), held_for


def _waiting(headers: dict[str, str], position: str) -> dict[str, str]:
    return {**headers, "X-Daybook-Min-Position": position}


def _capture(client: TestClient[Any], merchant_id: str, order: dict[str, Any]) -> None:
    """Pays the order in full, as a gateway webhook would."""
    fact = GatewayEvent(
        kind=GatewayEventKind.CAPTURED,
        gateway="stripe",
        gateway_ref=f"pi_{uuid.uuid4().hex}",
        event_id=f"evt_{uuid.uuid4().hex}",
        order_id=uuid.UUID(order["id"]),
        amount=order["total"]["amount"],
        currency=order["total"]["currency"],
    )
    context = CommandContext(actor="gateway:stripe", request_id=f"test-{uuid.uuid4().hex}")
    outcome = client.app.state.daybook.execute(ApplyGatewayEvent(context, uuid.UUID(merchant_id), fact))
    assert outcome.order is not None
    assert str(outcome.order.status) == "paid"


@pytest.fixture(scope="module")
def other_merchant_headers(client: TestClient[Any], admin_headers: dict[str, str]) -> dict[str, str]:
    """A second merchant, created through the admin endpoint."""
    headers: dict[str, str] = create_merchant(client, "Other merchant")["headers"]
    return headers


@pytest.fixture
def lonely_merchant_headers(client: TestClient[Any], admin_headers: dict[str, str]) -> dict[str, str]:
    """A merchant of the test's own, so that its order list holds only what the test placed."""
    headers: dict[str, str] = create_merchant(client, "Lonely merchant")["headers"]
    return headers


# Placing: validation.


def test_placed_order_has_the_contract_shape_a_hold_expiry_and_a_position(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 10)
    response = client.post(
        "/v1/orders", json=_order(sku, 3, customer_ref="cust-1", hold_seconds=120), headers=merchant_headers
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert {"id", "status", "lines", "total", "amount_captured", "amount_refunded", "payment_ids"} <= set(order)
    assert {"hold_expires_at", "created_at", "updated_at"} <= set(order)
    assert order["status"] == "reserved"
    assert order["lines"] == [{"sku": sku, "quantity": 3, "unit_price": {"amount": 500, "currency": "EUR"}}]
    assert order["total"] == {"amount": 1500, "currency": "EUR"}
    assert order["amount_captured"] == {"amount": 0, "currency": "EUR"}
    assert order["amount_refunded"] == {"amount": 0, "currency": "EUR"}
    assert order["payment_ids"] == []
    _assert_held_for(order, 120)
    assert uuid.UUID(order["id"])
    assert int(response.headers["x-daybook-position"]) > 0
    assert response.headers["x-request-id"]


def test_default_hold_is_900_seconds(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    _assert_held_for(order, 900)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda body: body.update(coupon="FREE"), id="top-level"),
        pytest.param(lambda body: body["lines"][0].update(colour="red"), id="in-a-line"),
        pytest.param(lambda body: body["lines"][0]["unit_price"].update(tax=1), id="in-a-price"),
    ],
)
def test_order_with_an_unknown_field_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], change: Any
) -> None:
    sku = _stock(client, merchant_headers, 5)
    body = _order(sku)
    change(body)
    _problem(client.post("/v1/orders", json=body, headers=merchant_headers), 400, "invalid_request")
    assert _level_now(client, merchant_headers, sku) == (5, 0, 5)


@pytest.mark.parametrize("count", [0, 101])
def test_order_with_no_lines_or_more_than_100_lines_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], count: int
) -> None:
    sku = _stock(client, merchant_headers, 500)
    body = _order(sku)
    body["lines"] = body["lines"] * count
    _problem(client.post("/v1/orders", json=body, headers=merchant_headers), 400, "invalid_request")
    assert _level_now(client, merchant_headers, sku) == (500, 0, 500)


def test_order_with_100_lines_is_accepted(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 100)
    body = _order(sku)
    body["lines"] = [{"sku": sku, "quantity": 1, "unit_price": {"amount": i, "currency": "EUR"}} for i in range(100)]
    order, _ = _place(client, merchant_headers, body)
    assert order["total"]["amount"] == sum(range(100))
    assert _level_now(client, merchant_headers, sku) == (100, 100, 0)


@pytest.mark.parametrize("quantity", [0, -1, 10_001])
def test_line_quantity_outside_1_to_10000_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], quantity: int
) -> None:
    sku = _stock(client, merchant_headers, 20_000)
    _problem(client.post("/v1/orders", json=_order(sku, quantity), headers=merchant_headers), 400, "invalid_request")
    assert _level_now(client, merchant_headers, sku) == (20_000, 0, 20_000)


def test_line_quantity_of_10000_is_accepted(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 10_000)
    order, _ = _place(client, merchant_headers, _order(sku, 10_000))
    assert order["lines"][0]["quantity"] == 10_000
    assert _level_now(client, merchant_headers, sku) == (10_000, 10_000, 0)


@pytest.mark.parametrize("hold_seconds", [59, 86_401, 0, -60])
def test_hold_seconds_outside_60_to_86400_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], hold_seconds: int
) -> None:
    sku = _stock(client, merchant_headers, 1)
    body = _order(sku, hold_seconds=hold_seconds)
    _problem(client.post("/v1/orders", json=body, headers=merchant_headers), 400, "invalid_request")
    assert _level_now(client, merchant_headers, sku) == (1, 0, 1)


@pytest.mark.parametrize("hold_seconds", [60, 86_400])
def test_hold_seconds_at_the_bounds_is_accepted(
    client: TestClient[Any], merchant_headers: dict[str, str], hold_seconds: int
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku, hold_seconds=hold_seconds))
    _assert_held_for(order, hold_seconds)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda body: body["lines"][0].update(sku="bad sku"), id="sku"),
        pytest.param(lambda body: body["lines"][0].update(sku="x" * 65), id="long-sku"),
        pytest.param(lambda body: body.update(currency="eur"), id="lower-case-currency"),
        pytest.param(lambda body: body["lines"][0]["unit_price"].update(amount=-1), id="negative-price"),
        pytest.param(lambda body: body["lines"][0]["unit_price"].update(amount=5.5), id="float-price"),
        pytest.param(lambda body: body["lines"][0].update(quantity=1.5), id="fractional-quantity"),
        pytest.param(lambda body: body.pop("currency"), id="no-currency"),
    ],
)
def test_malformed_order_is_400(client: TestClient[Any], merchant_headers: dict[str, str], change: Any) -> None:
    sku = _stock(client, merchant_headers, 5)
    body = _order(sku)
    change(body)
    _problem(client.post("/v1/orders", json=body, headers=merchant_headers), 400, "invalid_request")


def test_line_priced_in_another_currency_is_400_currency_mismatch_and_holds_nothing(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    euro, dollar = _stock(client, merchant_headers, 5), _stock(client, merchant_headers, 5)
    body = _order(euro)
    body["lines"].append({"sku": dollar, "quantity": 1, "unit_price": {"amount": 100, "currency": "USD"}})
    _problem(client.post("/v1/orders", json=body, headers=merchant_headers), 400, "currency_mismatch")
    assert _level_now(client, merchant_headers, euro) == (5, 0, 5)
    assert _level_now(client, merchant_headers, dollar) == (5, 0, 5)


# Placing: stock, all or nothing.


def test_order_beyond_available_stock_is_409_out_of_stock_listing_the_short_line(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 3)
    body = _problem(client.post("/v1/orders", json=_order(sku, 4), headers=merchant_headers), 409, "out_of_stock")
    assert body["lines"] == [{"sku": sku, "requested": 4, "available": 3}]
    assert _level_now(client, merchant_headers, sku) == (3, 0, 3)


def test_out_of_stock_counts_units_already_held_by_other_orders(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 5)
    _place(client, merchant_headers, _order(sku, 4))
    body = _problem(client.post("/v1/orders", json=_order(sku, 2), headers=merchant_headers), 409, "out_of_stock")
    assert body["lines"] == [{"sku": sku, "requested": 2, "available": 1}]


def test_order_of_a_sku_never_stocked_is_409_out_of_stock_with_nothing_available(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _sku()
    body = _problem(client.post("/v1/orders", json=_order(sku, 1), headers=merchant_headers), 409, "out_of_stock")
    assert body["lines"] == [{"sku": sku, "requested": 1, "available": 0}]
    _problem(client.get(f"/v1/inventory/{sku}", headers=merchant_headers), 404, "not_found")


def test_lines_of_one_sku_are_held_together(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 5)
    body = _order(sku, 3)
    body["lines"].append({"sku": sku, "quantity": 3, "unit_price": {"amount": 200, "currency": "EUR"}})
    refused = _problem(client.post("/v1/orders", json=body, headers=merchant_headers), 409, "out_of_stock")
    assert refused["lines"] == [{"sku": sku, "requested": 6, "available": 5}]
    body["lines"][1]["quantity"] = 2
    order, _ = _place(client, merchant_headers, body)
    assert order["total"]["amount"] == 3 * 500 + 2 * 200
    assert _level_now(client, merchant_headers, sku) == (5, 5, 0)


def test_multi_line_order_that_cannot_be_fully_held_holds_nothing_and_no_order_exists(
    client: TestClient[Any], lonely_merchant_headers: dict[str, str]
) -> None:
    headers = lonely_merchant_headers
    plenty, scarce, other = (_stock(client, headers, n) for n in (10, 1, 4))
    body = _order(plenty, 2)
    body["lines"] += [
        {"sku": scarce, "quantity": 3, "unit_price": {"amount": 100, "currency": "EUR"}},
        {"sku": other, "quantity": 4, "unit_price": {"amount": 100, "currency": "EUR"}},
    ]
    response = client.post("/v1/orders", json=body, headers=headers)
    refused = _problem(response, 409, "out_of_stock")
    assert refused["lines"] == [{"sku": scarce, "requested": 3, "available": 1}]
    assert _level_now(client, headers, plenty) == (10, 0, 10)
    assert _level_now(client, headers, scarce) == (1, 0, 1)
    assert _level_now(client, headers, other) == (4, 0, 4)
    # Read your (lack of) writes: everything recorded so far is projected, and no order is listed.
    marker = client.post(f"/v1/inventory/{plenty}/receipts", json={"quantity": 1}, headers=headers)
    listed = client.get("/v1/orders", headers=_waiting(headers, marker.headers["x-daybook-position"]))
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"data": [], "next_cursor": None}
    level = client.get(f"/v1/inventory/{scarce}", headers=_waiting(headers, marker.headers["x-daybook-position"]))
    assert level.json()["reserved"] == 0


# Reading.


def test_unknown_order_is_404(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    _problem(client.get(f"/v1/orders/{uuid.uuid4()}", headers=merchant_headers), 404, "not_found")
    _problem(client.get(f"/v1/orders/{uuid.uuid4()}/events", headers=merchant_headers), 404, "not_found")
    _problem(client.post(f"/v1/orders/{uuid.uuid4()}/cancel", headers=merchant_headers), 404, "not_found")


def test_id_of_an_inventory_stream_is_not_an_order(
    client: TestClient[Any], merchant_headers: dict[str, str], merchant: dict[str, Any]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    item_id = inventory_item_id(uuid.UUID(merchant["merchant_id"]), sku)
    _problem(client.get(f"/v1/orders/{item_id}", headers=merchant_headers), 404, "not_found")
    _problem(client.get(f"/v1/orders/{item_id}/events", headers=merchant_headers), 404, "not_found")
    _problem(client.post(f"/v1/orders/{item_id}/cancel", headers=merchant_headers), 404, "not_found")
    assert _level_now(client, merchant_headers, sku) == (1, 0, 1)


def test_another_merchants_order_is_404_everywhere(
    client: TestClient[Any], merchant_headers: dict[str, str], other_merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 2)
    order, position = _place(client, merchant_headers, _order(sku))
    theirs = _waiting(other_merchant_headers, position)
    _problem(client.get(f"/v1/orders/{order['id']}", headers=theirs), 404, "not_found")
    _problem(client.get(f"/v1/orders/{order['id']}", params={"as_of": _now()}, headers=theirs), 404, "not_found")
    _problem(client.get(f"/v1/orders/{order['id']}/events", headers=theirs), 404, "not_found")
    _problem(client.post(f"/v1/orders/{order['id']}/cancel", headers=theirs), 404, "not_found")
    assert order["id"] not in [o["id"] for o in client.get("/v1/orders?limit=100", headers=theirs).json()["data"]]
    # The owner's order was not touched by any of that.
    mine = client.get(f"/v1/orders/{order['id']}", params={"as_of": _now()}, headers=merchant_headers)
    assert mine.json()["status"] == "reserved"


def test_order_read_with_min_position_equals_the_placed_order(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 2)
    order, position = _place(client, merchant_headers, _order(sku, 2, customer_ref="c-9"))
    response = client.get(f"/v1/orders/{order['id']}", headers=_waiting(merchant_headers, position))
    assert response.status_code == 200, response.text
    assert response.json() == order


def test_auditor_reads_orders_but_is_forbidden_to_place_or_cancel(
    client: TestClient[Any], merchant_headers: dict[str, str], auditor_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 2)
    order, position = _place(client, merchant_headers, _order(sku))
    reading = _waiting(auditor_headers, position)
    assert client.get(f"/v1/orders/{order['id']}", headers=reading).json()["id"] == order["id"]
    assert client.get("/v1/orders", headers=reading).status_code == 200
    assert client.get(f"/v1/orders/{order['id']}/events", headers=reading).status_code == 200
    _problem(client.post("/v1/orders", json=_order(sku), headers=auditor_headers), 403, "forbidden")
    _problem(client.post(f"/v1/orders/{order['id']}/cancel", headers=auditor_headers), 403, "forbidden")
    assert _level_now(client, merchant_headers, sku) == (2, 1, 1)
    still = client.get(f"/v1/orders/{order['id']}", params={"as_of": _now()}, headers=merchant_headers)
    assert still.json()["status"] == "reserved"


# Lists.


def test_order_list_walks_every_order_exactly_once_in_creation_order(
    client: TestClient[Any], lonely_merchant_headers: dict[str, str]
) -> None:
    headers = lonely_merchant_headers
    sku = _stock(client, headers, 100)
    placed = []
    position = "0"
    for _ in range(7):
        order, position = _place(client, headers, _order(sku))
        placed.append(order["id"])
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = client.get("/v1/orders", params=params, headers=_waiting(headers, position))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 3
        seen += [order["id"] for order in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None, "the cursor does not advance"
    assert seen == placed


def test_order_list_filters_by_status_and_pages_within_it(
    client: TestClient[Any], lonely_merchant_headers: dict[str, str]
) -> None:
    headers = lonely_merchant_headers
    sku = _stock(client, headers, 100)
    ids = [_place(client, headers, _order(sku))[0]["id"] for _ in range(5)]
    position = "0"
    for order_id in ids[1::2]:
        cancelled = client.post(f"/v1/orders/{order_id}/cancel", headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        position = cancelled.headers["x-daybook-position"]

    def walk(status: str) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(10):
            params: dict[str, Any] = {"status": status, "limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/orders", params=params, headers=_waiting(headers, position)).json()
            assert all(order["status"] == status for order in page["data"])
            seen += [order["id"] for order in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError("the cursor does not advance")

    assert walk("reserved") == ids[0::2]
    assert walk("cancelled") == ids[1::2]
    assert walk("paid") == []


def test_order_list_with_an_unknown_status_is_400(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    _problem(client.get("/v1/orders", params={"status": "shipped"}, headers=merchant_headers), 400, "invalid_request")


@pytest.mark.parametrize("limit", ["0", "101", "-5", "ten"])
def test_order_list_limit_outside_1_to_100_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], limit: str
) -> None:
    _problem(client.get("/v1/orders", params={"limit": limit}, headers=merchant_headers), 400, "invalid_request")


def test_order_list_accepts_limits_1_and_100(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    assert len(client.get("/v1/orders?limit=1", headers=merchant_headers).json()["data"]) <= 1
    assert len(client.get("/v1/orders?limit=100", headers=merchant_headers).json()["data"]) <= 100


@pytest.mark.parametrize(
    "cursor",
    ["%%%", "bm90IGpzb24", "WzEsMl0", "WyJ4Il0", "WyJub3QgYSB0aW1lIiwibm90IGEgdXVpZCJd"],
)
def test_order_list_cursor_not_returned_by_the_api_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], cursor: str
) -> None:
    _problem(client.get("/v1/orders", params={"cursor": cursor}, headers=merchant_headers), 400, "invalid_request")


# As of a past instant.


def test_order_as_of_an_instant_before_its_cancel_shows_it_reserved(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 2)
    order, _ = _place(client, merchant_headers, _order(sku))
    between = _now()  # this machine's clock is the server's
    cancelled = client.post(f"/v1/orders/{order['id']}/cancel", headers=merchant_headers)
    assert cancelled.json()["status"] == "cancelled"
    then = client.get(f"/v1/orders/{order['id']}", params={"as_of": between}, headers=merchant_headers)
    assert then.status_code == 200, then.text
    assert then.json() == order
    now = client.get(f"/v1/orders/{order['id']}", params={"as_of": _now()}, headers=merchant_headers)
    assert now.json()["status"] == "cancelled"
    level_then = client.get(f"/v1/inventory/{sku}", params={"as_of": between}, headers=merchant_headers)
    assert level_then.json()["reserved"] == 1
    assert _level_now(client, merchant_headers, sku) == (2, 0, 2)


def test_order_as_of_an_instant_before_it_was_placed_is_404(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    before = (datetime.fromisoformat(order["created_at"]) - timedelta(seconds=1)).isoformat()
    _problem(
        client.get(f"/v1/orders/{order['id']}", params={"as_of": before}, headers=merchant_headers), 404, "not_found"
    )


@pytest.mark.parametrize("as_of", ["2030-01-01T00:00:00", "last tuesday"])
def test_order_as_of_without_a_time_zone_or_not_a_time_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], as_of: str
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    response = client.get(f"/v1/orders/{order['id']}", params={"as_of": as_of}, headers=merchant_headers)
    _problem(response, 400, "invalid_request")


# Cancel.


def test_cancel_answers_200_cancelled_with_a_position_and_releases_the_stock(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 5)
    order, _ = _place(client, merchant_headers, _order(sku, 3))
    assert _level_now(client, merchant_headers, sku) == (5, 3, 2)
    response = client.post(f"/v1/orders/{order['id']}/cancel", headers=merchant_headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["id"] == order["id"]
    position = response.headers["x-daybook-position"]
    assert int(position) > 0
    level = client.get(f"/v1/inventory/{sku}", headers=_waiting(merchant_headers, position)).json()
    assert (level["on_hand"], level["reserved"], level["available"]) == (5, 0, 5)
    read = client.get(f"/v1/orders/{order['id']}", headers=_waiting(merchant_headers, position)).json()
    assert read["status"] == "cancelled"
    # The released units can be held again.
    _place(client, merchant_headers, _order(sku, 5))


def test_cancelling_twice_is_harmless_and_releases_once(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 4)
    first, _ = _place(client, merchant_headers, _order(sku, 2))
    _place(client, merchant_headers, _order(sku, 2))
    for _ in range(2):
        response = client.post(f"/v1/orders/{first['id']}/cancel", headers=merchant_headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert int(response.headers["x-daybook-position"]) > 0
    assert _level_now(client, merchant_headers, sku) == (4, 2, 2)


def test_cancelling_a_paid_order_is_409_invalid_state_and_keeps_it_paid(
    client: TestClient[Any], merchant_headers: dict[str, str], merchant: dict[str, Any]
) -> None:
    sku = _stock(client, merchant_headers, 5)
    order, _ = _place(client, merchant_headers, _order(sku, 2))
    _capture(client, merchant["merchant_id"], order)
    # Paying committed the held units: they left the shelf.
    assert _level_now(client, merchant_headers, sku) == (3, 0, 3)
    _problem(client.post(f"/v1/orders/{order['id']}/cancel", headers=merchant_headers), 409, "invalid_state")
    after = client.get(f"/v1/orders/{order['id']}", params={"as_of": _now()}, headers=merchant_headers).json()
    assert after["status"] == "paid"
    assert after["amount_captured"] == order["total"]
    assert _level_now(client, merchant_headers, sku) == (3, 0, 3)


def test_cancel_with_a_body_is_400(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    response = client.post(f"/v1/orders/{order['id']}/cancel", json={"reason": "x"}, headers=merchant_headers)
    _problem(response, 400, "invalid_request")
    assert _level_now(client, merchant_headers, sku) == (1, 1, 0)


# The order's own events.


def test_order_events_are_its_stream_in_version_order(
    client: TestClient[Any], merchant_headers: dict[str, str], merchant: dict[str, Any]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    client.post(f"/v1/orders/{order['id']}/cancel", headers={**merchant_headers, "X-Request-ID": "cancel-trace"})
    response = client.get(f"/v1/orders/{order['id']}/events", headers=merchant_headers)
    assert response.status_code == 200, response.text
    events = response.json()["data"]
    assert [e["type"] for e in events] == ["Order.Placed", "Order.Cancelled"]
    assert [e["version"] for e in events] == [1, 2]
    assert events[0]["position"] < events[1]["position"]
    assert {e["stream_id"] for e in events} == {order["id"]}
    assert {e["stream_type"] for e in events} == {"Order"}
    assert events[1]["metadata"]["request_id"] == "cancel-trace"
    assert events[0]["data"]["merchant_id"] == merchant["merchant_id"]
    assert response.json()["next_cursor"] is None


def test_order_events_page_through_the_stream(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    client.post(f"/v1/orders/{order['id']}/cancel", headers=merchant_headers)
    first = client.get(f"/v1/orders/{order['id']}/events", params={"limit": 1}, headers=merchant_headers).json()
    assert [e["type"] for e in first["data"]] == ["Order.Placed"]
    assert first["next_cursor"]
    second = client.get(
        f"/v1/orders/{order['id']}/events",
        params={"limit": 1, "cursor": first["next_cursor"]},
        headers=merchant_headers,
    )
    assert second.status_code == 200, second.text
    assert [e["type"] for e in second.json()["data"]] == ["Order.Cancelled"]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "1001"}, {"cursor": "WyJ4Il0"}, {"cursor": "%%"}])
def test_order_events_with_a_bad_limit_or_cursor_is_400(
    client: TestClient[Any], merchant_headers: dict[str, str], params: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    response = client.get(f"/v1/orders/{order['id']}/events", params=params, headers=merchant_headers)
    _problem(response, 400, "invalid_request")


def test_another_merchants_order_events_stay_hidden_past_the_first_page(
    client: TestClient[Any], merchant_headers: dict[str, str], other_merchant_headers: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    client.post(f"/v1/orders/{order['id']}/cancel", headers=merchant_headers)
    first = client.get(f"/v1/orders/{order['id']}/events", params={"limit": 1}, headers=merchant_headers).json()
    response = client.get(
        f"/v1/orders/{order['id']}/events",
        params={"limit": 1, "cursor": first["next_cursor"]},
        headers=other_merchant_headers,
    )
    _problem(response, 404, "not_found")


# Read-your-writes and request ids.


@pytest.mark.parametrize("value", ["latest", "-3", "4.0", ""])
def test_order_reads_with_a_min_position_that_is_not_a_non_negative_integer_are_400(
    client: TestClient[Any], merchant_headers: dict[str, str], value: str
) -> None:
    sku = _stock(client, merchant_headers, 1)
    order, _ = _place(client, merchant_headers, _order(sku))
    headers = _waiting(merchant_headers, value)
    _problem(client.get(f"/v1/orders/{order['id']}", headers=headers), 400, "invalid_request")
    _problem(client.get("/v1/orders", headers=headers), 400, "invalid_request")


def test_order_reads_with_an_unreachable_min_position_are_503_projection_lagging(
    api_settings: Settings,
    database_url: str,
    redis_url: str,
    merchant_headers: dict[str, str],
) -> None:
    impatient = create_app(replace(api_settings, read_wait_max_seconds=0.3), database_url, redis_url)
    with TestClient(impatient, raise_server_exceptions=False) as other:
        sku = _stock(other, merchant_headers, 1)
        order, _ = _place(other, merchant_headers, _order(sku))
        headers = _waiting(merchant_headers, str(10**15))
        for response in (
            other.get(f"/v1/orders/{order['id']}", headers=headers),
            other.get("/v1/orders", headers=headers),
        ):
            _problem(response, 503, "projection_lagging")
            assert response.headers["retry-after"]


def test_every_order_response_carries_the_request_id(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    sku = _stock(client, merchant_headers, 1)
    headers = {**merchant_headers, "X-Request-ID": "orders-trace-7"}
    placed = client.post("/v1/orders", json=_order(sku), headers=headers)
    responses = [
        placed,
        client.post("/v1/orders", json=_order(sku), headers=headers),  # 409
        client.post("/v1/orders", json={"lines": []}, headers=headers),  # 400
        client.get(f"/v1/orders/{uuid.uuid4()}", headers=headers),  # 404
        client.get(f"/v1/orders/{placed.json()['id']}", params={"as_of": _now()}, headers=headers),
        client.get("/v1/orders", headers=headers),
        client.get(f"/v1/orders/{placed.json()['id']}/events", headers=headers),
        client.post(f"/v1/orders/{placed.json()['id']}/cancel", headers=headers),
    ]
    assert [r.status_code for r in responses] == [201, 409, 400, 404, 200, 200, 200, 200]
    assert all(r.headers["x-request-id"] == "orders-trace-7" for r in responses)
    generated = client.get(f"/v1/orders/{uuid.uuid4()}", headers=merchant_headers)
    assert generated.headers["x-request-id"]
    assert generated.json()["request_id"] == generated.headers["x-request-id"]


@pytest.mark.parametrize("extra", [{}, {"Idempotency-Key": "big-body"}], ids=["plain", "with-key"])
def test_order_body_over_one_mebibyte_is_413(
    client: TestClient[Any], merchant_headers: dict[str, str], extra: dict[str, str]
) -> None:
    sku = _stock(client, merchant_headers, 1)
    body = json.dumps(_order(sku, customer_ref="x" * (1024 * 1024))).encode()
    headers = {**merchant_headers, "Content-Type": "application/json", **extra}
    _problem(client.post("/v1/orders", content=body, headers=headers), 413, "payload_too_large")
    assert _level_now(client, merchant_headers, sku) == (1, 0, 1)


@pytest.mark.parametrize(
    ("field_path", "value"),
    [(("lines", 0, "quantity"), "2"), (("lines", 0, "unit_price", "amount"), "500"), (("hold_seconds",), "900")],
)
def test_numbers_sent_as_strings_are_rejected_not_coerced(
    client: TestClient[Any], merchant_headers: dict[str, str], field_path: tuple[Any, ...], value: str
) -> None:
    body = _order(_sku(), 1)
    body.setdefault("hold_seconds", 900)
    target: Any = body
    for step in field_path[:-1]:
        target = target[step]
    target[field_path[-1]] = value
    response = client.post("/v1/orders", json=body, headers=merchant_headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"
