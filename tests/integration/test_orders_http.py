"""Orders and inventory over HTTP, through the group committer, on real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import TestClient

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
