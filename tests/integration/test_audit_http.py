"""``/v1/audit``: chained events as JSON pages and NDJSON, traces, one stream, the digest, verify, roles."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from litestar.testing import TestClient

from adapters.audit_signing import signature_holds
from adapters.settings import Settings
from api.app import create_app
from api.openapi_operations import OPERATIONS
from daybook.audit_cli import verify_file
from domain import limits
from domain.audit import GENESIS_HASH, ChainVerifier
from tests.conftest import fresh_database
from tests.integration.conftest import create_merchant, running_projections
from tests.integration.serving import wait_for

if TYPE_CHECKING:
    from tests.conftest import Servers

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture(scope="module")
def own_database(servers: Servers) -> Iterator[str]:
    with fresh_database(servers) as url:
        yield url


@pytest.fixture(scope="module")
def client(own_database: str, redis_url: str, api_settings: Settings) -> Iterator[TestClient[Any]]:
    with (
        running_projections(own_database, api_settings),
        TestClient(create_app(api_settings, own_database, redis_url), raise_server_exceptions=False) as test_client,
    ):
        yield test_client


def auditor(merchant: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {merchant['auditor_key']}"}


def history(client: TestClient[Any], merchant: dict[str, Any], orders: int, request_id: str | None = None) -> int:
    """Stock and orders through the API; returns the last position written."""
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    headers = {**merchant["headers"], **({"X-Request-ID": request_id} if request_id else {})}
    received = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 100}, headers=merchant["headers"])
    assert received.status_code == 201
    position = int(received.headers["x-daybook-position"])
    for number in range(orders):
        body = {
            "lines": [{"sku": sku, "quantity": 1, "unit_price": {"amount": 500, "currency": "EUR"}}],
            "currency": "EUR",
            "customer_ref": f"Zoë ☕ {number}",
        }
        placed = client.post("/v1/orders", json=body, headers=headers)
        assert placed.status_code == 201, placed.text
        position = int(placed.headers["x-daybook-position"])
    return position


def chained_up_to(client: TestClient[Any], position: int) -> dict[str, str]:
    return {"X-Daybook-Min-Position": str(position)}


def all_pages(client: TestClient[Any], headers: dict[str, str], limit: int = 7) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"?limit={limit}" + (f"&after={cursor}" if cursor else "")
        page = client.get(f"/v1/audit/events{query}", headers=headers)
        assert page.status_code == 200, page.text
        events += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return events


def ndjson(client: TestClient[Any], headers: dict[str, str], query: str = "") -> list[bytes]:
    answer = client.get(f"/v1/audit/events{query}", headers={**headers, **NDJSON})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    return answer.content.splitlines()


@pytest.fixture(scope="module")
def merchant(client: TestClient[Any]) -> dict[str, Any]:
    created = create_merchant(client, "Audited")
    created["position"] = history(client, created, 6)
    return created


def test_an_auditor_pages_through_the_merchant_s_events_and_they_chain_from_the_genesis(
    client: TestClient[Any], merchant: dict[str, Any]
) -> None:
    events = all_pages(client, {**auditor(merchant), **chained_up_to(client, merchant["position"])})
    verifier = ChainVerifier()
    assert [verifier.check(event) for event in events] == [None] * len(events)
    assert events[0]["prev_hash"] == GENESIS_HASH
    assert events[-1]["position"] == merchant["position"]
    assert {event["data"]["merchant_id"] for event in events} == {merchant["merchant_id"]}
    assert {"actor", "request_id"} <= set(events[0]["metadata"])


def test_ndjson_streams_every_event_as_its_canonical_json_one_per_line(
    client: TestClient[Any], merchant: dict[str, Any]
) -> None:
    headers = {**auditor(merchant), **chained_up_to(client, merchant["position"])}
    lines = ndjson(client, headers)
    parsed = [json.loads(line) for line in lines]
    assert parsed == all_pages(client, headers, limit=1000)
    canonical = [
        json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() for event in parsed
    ]
    assert lines == canonical
    assert len(ndjson(client, headers, "?limit=3")) == 3
    assert [json.loads(line) for line in ndjson(client, headers, f"?after={parsed[2]['position']}")] == parsed[3:]


def test_ndjson_read_a_few_rows_a_page_gives_every_event_once_in_order(
    client: TestClient[Any], merchant: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**auditor(merchant), **chained_up_to(client, merchant["position"])}
    whole = ndjson(client, headers)
    monkeypatch.setattr(limits, "AUDIT_EXPORT_PAGE_SIZE", 2)  # many pages, each read while the one before is sent
    assert ndjson(client, headers) == whole
    assert ndjson(client, headers, "?limit=5") == whole[:5]
    after = json.loads(whole[2])["position"]
    assert ndjson(client, headers, f"?after={after}&limit=4") == whole[3:7]
    assert len(whole) > 7


def test_pages_and_ndjson_read_from_the_chain_s_shapes_equal_those_decoded_from_the_stored_events(
    client: TestClient[Any], own_database: str
) -> None:
    created = create_merchant(client, "Shaped")
    headers = {**auditor(created), **chained_up_to(client, history(client, created, 3))}
    lines, pages = ndjson(client, headers), all_pages(client, headers, limit=4)
    types = {json.loads(line)["type"] for line in lines}
    assert {"Order.Placed", "InventoryItem.StockHeld"} <= types
    assert any(kind.startswith("AuditLog.") for kind in types)
    with psycopg.connect(own_database) as conn:
        shaped = conn.execute(
            "UPDATE audit_chain SET shape = NULL WHERE merchant_id = %s AND shape IS NOT NULL",
            (uuid.UUID(created["merchant_id"]),),
        ).rowcount
    assert shaped == len(lines)
    assert ndjson(client, headers) == lines
    assert all_pages(client, headers, limit=4) == pages


def test_a_request_id_traces_one_request_to_every_event_it_caused(client: TestClient[Any]) -> None:
    merchant = create_merchant(client, "Traced")
    position = history(client, merchant, 2, request_id="trace-one-request")
    history(client, merchant, 1)
    headers = {**auditor(merchant), **chained_up_to(client, position)}
    traced = client.get("/v1/audit/events?request_id=trace-one-request&limit=1000", headers=headers).json()["data"]
    assert len(traced) == 4  # two orders placed, stock held for each
    assert {event["metadata"]["request_id"] for event in traced} == {"trace-one-request"}
    assert {event["type"] for event in traced} == {"Order.Placed", "InventoryItem.StockHeld"}
    assert [json.loads(line) for line in ndjson(client, headers, "?request_id=trace-one-request")] == traced
    assert client.get("/v1/audit/events?request_id=nobody", headers=headers).json() == {"data": [], "next_cursor": None}


def test_a_trace_id_with_a_control_character_is_refused_as_invalid(client: TestClient[Any]) -> None:
    headers = auditor(create_merchant(client, "Traced badly"))
    for query in ("request_id=a%00b", "causation_id=%0A", "request_id=ok%C2%85"):
        answer = client.get(f"/v1/audit/events?{query}", headers=headers)
        assert answer.status_code == 400, query
        assert answer.json()["code"] == "invalid_request", query


def test_one_stream_is_read_in_version_order_and_another_merchant_s_stream_is_not_found(
    client: TestClient[Any], merchant: dict[str, Any]
) -> None:
    headers = {**auditor(merchant), **chained_up_to(client, merchant["position"])}
    order = next(e for e in all_pages(client, headers, limit=1000) if e["type"] == "Order.Placed")
    stream = client.get(f"/v1/audit/streams/{order['stream_id']}/events?limit=1", headers=headers)
    assert stream.status_code == 200
    assert stream.json()["data"] == [order]
    other = create_merchant(client, "Other")
    assert client.get(f"/v1/audit/streams/{order['stream_id']}/events", headers=auditor(other)).status_code == 404
    assert client.get(f"/v1/audit/streams/{uuid.uuid4()}/events", headers=headers).status_code == 404


def test_the_digest_signs_the_last_chained_position_and_hash_with_the_published_key(
    client: TestClient[Any], merchant: dict[str, Any]
) -> None:
    headers = {**auditor(merchant), **chained_up_to(client, merchant["position"])}
    last = all_pages(client, headers, limit=1000)[-1]
    digest = wait_for(
        lambda: (
            (answer := client.get("/v1/audit/digest", headers=headers).json())["position"] == last["position"]
            and answer
        ),
        timeout_s=20,
        what="a digest of the head",
    )
    assert set(digest) == {"merchant_id", "position", "hash", "signed_at", "signature", "public_key"}
    assert digest["hash"] == last["hash"]
    assert signature_holds(
        digest["public_key"], digest["signature"], merchant["merchant_id"], last["position"], last["hash"]
    )


def test_a_merchant_without_a_digest_gets_404(client: TestClient[Any], own_database: str) -> None:
    merchant = create_merchant(client, "Undigested")  # its audit log's first events are chained, then signed
    wait_for(
        lambda: client.get("/v1/audit/digest", headers=auditor(merchant)).status_code == 200,
        timeout_s=20,
        what="the first digest",
    )
    with psycopg.connect(own_database) as conn:
        conn.execute("DELETE FROM audit_digests WHERE merchant_id = %s", (merchant["merchant_id"],))
    answer = client.get("/v1/audit/digest", headers=auditor(merchant))
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")


def test_verify_and_the_offline_verify_of_an_export_both_report_a_changed_byte_at_its_position(
    client: TestClient[Any], own_database: str, tmp_path: Path
) -> None:
    merchant = create_merchant(client, "Tampered")
    position = history(client, merchant, 4)
    headers = {**auditor(merchant), **chained_up_to(client, position)}
    events = all_pages(client, headers, limit=1000)
    assert client.get("/v1/audit/verify", headers=headers).json() == {
        "ok": True,
        "events_checked": len(events),
        "first_mismatch": None,
    }
    target = next(e for e in events if e["type"] == "Order.Placed")
    with psycopg.connect(own_database) as conn:
        # One byte of the stored state, as the table owner could: "Zoë ☕ 0" becomes "Zoë ☕ 9".
        conn.execute(
            "UPDATE daybook_events SET state = "
            "overlay(state placing '9'::bytea from position('☕ '::bytea in state) + 4) WHERE notification_id = %s",
            (target["position"],),
        )
    answer = client.get("/v1/audit/verify", headers=headers).json()
    assert answer["ok"] is False
    assert answer["first_mismatch"]["position"] == target["position"]
    assert "changed" in answer["first_mismatch"]["reason"]
    assert client.get("/v1/audit/verify", headers=headers).json()["first_mismatch"] == answer["first_mismatch"]
    export = tmp_path / "export.ndjson"
    export.write_bytes(b"".join(line + b"\n" for line in ndjson(client, headers)))
    offline = verify_file(export, None)
    assert offline.mismatch is not None
    assert offline.mismatch.position == target["position"]


def test_an_auditor_key_is_refused_every_post(client: TestClient[Any], merchant: dict[str, Any]) -> None:
    posts = [operation for operation in OPERATIONS if operation.method == "post" and operation.roles]
    assert len(posts) >= 5
    for operation in posts:
        path = operation.path.format(
            sku="SKU-1", order_id=uuid.uuid4(), merchant_id=merchant["merchant_id"], gateway="stripe"
        )
        answer = client.post(path, json={}, headers=auditor(merchant))
        assert (answer.status_code, answer.json()["code"]) == (403, "forbidden"), operation.operation_id


def test_another_merchant_s_events_never_appear(client: TestClient[Any], merchant: dict[str, Any]) -> None:
    other = create_merchant(client, "Neighbour")
    position = history(client, other, 2, request_id="neighbour-request")
    for keys in (auditor(other), other["headers"]):
        headers = {**keys, **chained_up_to(client, max(position, merchant["position"]))}
        events = all_pages(client, headers, limit=1000)
        streamed = [json.loads(line) for line in ndjson(client, headers)]
        assert {event["data"]["merchant_id"] for event in events + streamed} == {other["merchant_id"]}
    mine = {**auditor(merchant), **chained_up_to(client, position)}
    assert client.get("/v1/audit/events?request_id=neighbour-request", headers=mine).json()["data"] == []
