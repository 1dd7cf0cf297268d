"""Hostile input through the real app: every bad value is a 4xx with its contract code.

Issue 11, items 1, 2, 8 and 15: text and ids with control characters, patterns that
match the whole string, money sums past 2**63 - 1, read positions in non-ASCII digits, and
merchant names (one rule for the admin endpoint and the CLI).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from adapters.settings import Settings
from api.app import create_app
from api.consistency import parse_min_position
from tests.integration.conftest import create_merchant
from tests.integration.raw_http import exchange, request_bytes
from tests.integration.webhook_running import LiveApi

pytestmark = pytest.mark.usefixtures("projections_running")

AMOUNT_MAX = 2**63 - 1


def _sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.fixture(scope="module")
def hostile(client: TestClient[Any]) -> dict[str, Any]:
    """A merchant of this module's own."""
    return create_merchant(client, "Hostile input")


@pytest.fixture(scope="module")
def live(api_settings: Settings, database_url: str, redis_url: str) -> Iterator[LiveApi]:
    """The app served by uvicorn, for requests sent byte for byte."""
    server = LiveApi(create_app(api_settings, database_url, redis_url))
    server.start()
    yield server
    server.stop()


# Item 8: X-Daybook-Min-Position.


@pytest.mark.parametrize(
    "value",
    [
        b"\xb2",  # "²" in latin-1: str.isdigit() is true, int() refuses it
        b"1\xb9",  # "1¹"
        "٣".encode(),  # Arabic-Indic three, which int() reads as 3
        str(2**63).encode(),  # past any position a bigint can hold
        b"1_000",
    ],
)
def test_a_min_position_in_anything_but_ascii_digits_of_a_bigint_is_400(
    client: TestClient[Any], live: LiveApi, hostile: dict[str, Any], value: bytes
) -> None:
    sku = _sku()
    received = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 1}, headers=hostile["headers"])
    assert received.status_code == 201, received.text
    headers: dict[str, bytes | str] = {**hostile["headers"], "X-Daybook-Min-Position": value}
    for path in (f"/v1/inventory/{sku}", "/v1/orders"):
        response = exchange(live.port, request_bytes("GET", path, headers))
        assert (response.status, response.json()["code"]) == (400, "invalid_request"), response.body


def test_the_largest_position_is_accepted_as_a_position() -> None:
    assert parse_min_position(str(AMOUNT_MAX)) == AMOUNT_MAX
    assert parse_min_position("0") == 0
