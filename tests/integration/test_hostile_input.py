"""Hostile input through the real app: every bad value is a 4xx with its contract code.

Issue 11, items 1, 2, 8 and 15: text and ids with control characters, patterns that
match the whole string, money sums past 2**63 - 1, read positions in non-ASCII digits, and
merchant names (one rule for the admin endpoint and the CLI).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from adapters.settings import Settings
from api.app import create_app
from api.consistency import parse_min_position
from api.webhooks.signatures import sign_standard
from daybook.cli import main as cli_main
from domain.limits import LINE_QUANTITY_MAX, LINES_MAX, UNIT_PRICE_MAX
from tests.integration.conftest import create_merchant
from tests.integration.inbox_running import InboxDrain
from tests.integration.raw_http import exchange, request_bytes
from tests.integration.serving import wait_for
from tests.integration.webhook_running import LiveApi, projections_caught_up
from tests.integration.webhook_senders import Delivery, standard_body, standard_delivery, stripe_body, stripe_headers

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


# Item 1: control characters in free text and ids, patterns over the whole string.

CONTROLS = ["a\x00b", "line\n", "tab\there", "del\x7f", "c1\x85", "\x9f"]


@pytest.mark.parametrize("text", CONTROLS)
def test_free_text_with_a_control_character_is_400_in_every_field(
    client: TestClient[Any], hostile: dict[str, Any], text: str
) -> None:
    headers = hostile["headers"]
    sku = _sku()
    _problem(
        client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 1, "reference": text}, headers=headers),
        400,
        "invalid_request",
    )
    assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 5}, headers=headers).status_code == 201
    _problem(
        client.post(f"/v1/inventory/{sku}/adjustments", json={"delta": -1, "reason": text}, headers=headers),
        400,
        "invalid_request",
    )
    order = {
        "lines": [{"sku": sku, "quantity": 1, "unit_price": {"amount": 100, "currency": "EUR"}}],
        "currency": "EUR",
        "customer_ref": text,
    }
    _problem(client.post("/v1/orders", json=order, headers=headers), 400, "invalid_request")
    level = client.get(f"/v1/inventory/{sku}", params={"as_of": "2999-01-01T00:00:00Z"}, headers=headers).json()
    assert (level["on_hand"], level["reserved"]) == (5, 0)


@pytest.mark.parametrize("sku", ["abc\n", "abc%0A", "a%00b", "a b", "x" * 65])
def test_a_sku_is_checked_over_the_whole_string_in_the_path_and_in_order_lines(
    client: TestClient[Any], hostile: dict[str, Any], sku: str
) -> None:
    headers = hostile["headers"]
    path_sku = sku.replace("\n", "%0A").replace(" ", "%20")
    _problem(
        client.post(f"/v1/inventory/{path_sku}/receipts", json={"quantity": 1}, headers=headers), 400, "invalid_request"
    )
    _problem(
        client.post(f"/v1/inventory/{path_sku}/adjustments", json={"delta": 1, "reason": "count"}, headers=headers),
        400,
        "invalid_request",
    )
    decoded = sku.replace("%0A", "\n").replace("%00", "\x00")
    line = {"sku": decoded, "quantity": 1, "unit_price": {"amount": 1, "currency": "EUR"}}
    _problem(
        client.post("/v1/orders", json={"lines": [line], "currency": "EUR"}, headers=headers), 400, "invalid_request"
    )


def _stripe(merchant: dict[str, Any], event_type: str, obj: dict[str, Any], event_id: str | None = None) -> Delivery:
    event_id_sent, body = stripe_body(event_type, obj, event_id)
    headers = stripe_headers(body, merchant["webhook_secrets"]["stripe"])
    return Delivery(f"/v1/webhooks/{merchant['merchant_id']}/stripe", body, headers, event_id_sent)


def _inbox_rows(database_url: str, merchant_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM webhook_inbox WHERE merchant_id = %s", (merchant_id,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("text", CONTROLS)
def test_gateway_event_ids_references_and_refund_ids_with_a_control_character_are_400_malformed(
    client: TestClient[Any], hostile: dict[str, Any], database_url: str, text: str
) -> None:
    intent = {"id": "pi_ok", "currency": "eur", "amount_received": 100, "metadata": {}}
    charge = {"id": "ch_ok", "payment_intent": "pi_ok", "currency": "eur"}
    deliveries = [
        _stripe(hostile, "payment_intent.succeeded", intent, event_id=f"evt_{text}"),
        _stripe(hostile, "payment_intent.succeeded", {**intent, "id": f"pi_{text}"}),
        _stripe(hostile, "charge.refunded", {**charge, "refunds": {"data": [{"id": f"re_{text}", "amount": 5}]}}),
        standard_delivery(hostile, "payment.captured", {"gateway_ref": f"pay_{text}", "amount": 1, "currency": "EUR"}),
        standard_delivery(
            hostile,
            "payment.refunded",
            {"gateway_ref": "pay_ok", "amount": 1, "currency": "EUR", "refund_id": f"rf_{text}"},
        ),
    ]
    before = _inbox_rows(database_url, hostile["merchant_id"])
    for delivery in deliveries:
        _problem(client.post(delivery.path, content=delivery.body, headers=delivery.headers), 400, "malformed")
    assert _inbox_rows(database_url, hostile["merchant_id"]) == before


@pytest.mark.parametrize("raw_id", [b"msg_\x85", b"msg_\x9f", b"msg_\x80"])
def test_a_standard_webhook_id_with_a_control_byte_is_400_malformed(
    live: LiveApi, hostile: dict[str, Any], database_url: str, raw_id: bytes
) -> None:
    body = standard_body("payment.captured", {"gateway_ref": "pay_1", "amount": 100, "currency": "EUR"})
    msg_id = raw_id.decode("latin-1")  # as the server reads the header
    signed = sign_standard(body, hostile["webhook_secrets"]["standard"], msg_id, int(time.time()))
    headers: dict[str, bytes | str] = {**signed, "webhook-id": raw_id, "Content-Type": "application/json"}
    before = _inbox_rows(database_url, hostile["merchant_id"])
    path = f"/v1/webhooks/{hostile['merchant_id']}/standard"
    response = exchange(live.port, request_bytes("POST", path, headers, body))
    assert (response.status, response.json()["code"]) == (400, "malformed"), response.body
    assert _inbox_rows(database_url, hostile["merchant_id"]) == before


# Item 15: merchant names, one rule for the admin endpoint and the CLI.

NAMES = [
    ("  Acme  ", "Acme"),
    ("Café ✓", "Café ✓"),
    ("x" * 200, "x" * 200),
    ("", None),
    ("   ", None),
    ("\t\n", None),
    ("\x1fAcme", None),  # Python's str.strip() counts \x1f as white space
    ("\x85Acme", None),  # and NEL too
    ("Acme\n", None),
    ("A\x00cme", None),
    ("x" * 201, None),
    (" " + "x" * 200, None),
]


@pytest.mark.parametrize(("name", "stored"), NAMES)
def test_a_merchant_name_is_judged_alike_by_the_admin_endpoint_and_the_cli(
    client: TestClient[Any],
    admin_headers: dict[str, str],
    database_url: str,
    redis_url: str,
    name: str,
    stored: str | None,
) -> None:
    response = client.post("/v1/admin/merchants", json={"name": name}, headers=admin_headers)
    env = {"DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url, "DAYBOOK_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(cli_main, ["admin", "create-merchant", "--name", name], env=env)
    if stored is None:
        _problem(response, 400, "invalid_request")
        assert result.exit_code == 2, result.output
        assert "name" in result.output
        return
    assert response.status_code == 201, response.text
    assert response.json()["name"] == stored
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["name"] == stored


# Item 2: money sums stay within 2**63 - 1.


@pytest.fixture(scope="module")
def drain(database_url: str, api_settings: Settings) -> Iterator[InboxDrain]:
    inbox = InboxDrain(database_url, api_settings)
    yield inbox
    inbox.close()


def _projected(headers: dict[str, str], position: str) -> dict[str, str]:
    return {**headers, "X-Daybook-Min-Position": position}


LARGEST_TOTAL = UNIT_PRICE_MAX * LINE_QUANTITY_MAX * LINES_MAX


def _largest_order(client: TestClient[Any], headers: dict[str, str]) -> dict[str, Any]:
    """An order of LINES_MAX lines of LINE_QUANTITY_MAX units at UNIT_PRICE_MAX, its stock received."""
    sku = _sku()
    units = LINE_QUANTITY_MAX * LINES_MAX
    assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": units}, headers=headers).status_code == 201
    line = {"sku": sku, "quantity": LINE_QUANTITY_MAX, "unit_price": {"amount": UNIT_PRICE_MAX, "currency": "EUR"}}
    return {"lines": [line] * LINES_MAX, "currency": "EUR"}


def test_an_order_whose_total_would_pass_the_bigint_is_400_and_orders_stay_readable(
    client: TestClient[Any], hostile: dict[str, Any]
) -> None:
    headers = hostile["headers"]
    sku = _sku()
    assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 10}, headers=headers).status_code == 201
    priced = [{"sku": sku, "quantity": 2, "unit_price": {"amount": AMOUNT_MAX, "currency": "EUR"}}]
    _problem(
        client.post("/v1/orders", json={"lines": priced, "currency": "EUR"}, headers=headers), 400, "invalid_request"
    )
    split = [
        {"sku": sku, "quantity": 1, "unit_price": {"amount": AMOUNT_MAX, "currency": "EUR"}},
        {"sku": sku, "quantity": 1, "unit_price": {"amount": 1, "currency": "EUR"}},
    ]
    _problem(
        client.post("/v1/orders", json={"lines": split, "currency": "EUR"}, headers=headers), 400, "invalid_request"
    )
    # The largest order the bounds allow (every line at its largest) has a total that fits.
    placed = client.post("/v1/orders", json=_largest_order(client, headers), headers=headers)
    assert placed.status_code == 201, placed.text
    wait = _projected(headers, placed.headers["x-daybook-position"])
    listed = client.get("/v1/orders", params={"limit": 100}, headers=wait)
    assert listed.status_code == 200, listed.text
    [row] = [order for order in listed.json()["data"] if order["id"] == placed.json()["id"]]
    assert row["total"] == {"amount": LARGEST_TOTAL, "currency": "EUR"}


def test_captures_of_one_order_past_the_bigint_park_the_fact_and_every_read_model_keeps_up(
    client: TestClient[Any], hostile: dict[str, Any], drain: InboxDrain, database_url: str
) -> None:
    headers = hostile["headers"]
    order = client.post("/v1/orders", json=_largest_order(client, headers), headers=headers).json()
    for ref in ("pi_big_1", "pi_big_2"):
        intent = {"id": ref, "currency": "eur", "amount_received": AMOUNT_MAX, "metadata": {"order_id": order["id"]}}
        delivery = _stripe(hostile, "payment_intent.succeeded", intent)
        answer = client.post(delivery.path, content=delivery.body, headers=delivery.headers)
        assert answer.json() == {"status": "accepted"}, answer.text
    report = drain.drain(hostile["merchant_id"])
    assert len(report.processed) == 1
    [reason] = report.parked.values()
    assert reason.startswith("invalid_request:")
    wait_for(lambda: projections_caught_up(database_url), timeout_s=30, what="projections to reach the head")
    served = client.get(f"/v1/orders/{order['id']}", headers=headers).json()
    assert served["status"] == "paid"
    assert served["amount_captured"] == {"amount": AMOUNT_MAX, "currency": "EUR"}
