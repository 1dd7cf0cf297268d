"""The live feed over real ``daybook api`` processes: resumable, gapless, bounded, per merchant."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from adapters.audit_events import canonical
from domain.audit import GENESIS_HASH, chain_hash, event_body
from tests.integration.serving import ApiProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("projections_running")]

FEED_ENV = {
    "DAYBOOK_SSE_HEARTBEAT_SECONDS": "0.5",
    "DAYBOOK_SSE_POLL_SECONDS": "0.2",
    "DAYBOOK_SSE_CONNECTIONS_PER_MERCHANT_MAX": "3",
}


@dataclass
class Event:
    """One SSE event as a client parsed it."""

    id: int
    type: str
    data: dict[str, Any]


@dataclass
class Reading:
    """What one connection of a client read before it stopped."""

    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


@contextmanager
def _stream_admitted(base_url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
    """Opens the stream as an SSE client does: a 429 is retried (the server gives the slot of
    a connection the client just closed back once it notices the close)."""
    deadline = time.monotonic() + 15
    while True:
        with httpx.stream("GET", f"{base_url}/v1/events/stream", headers=headers, timeout=10) as response:
            if response.status_code == 429 and time.monotonic() < deadline:
                response.read()
                time.sleep(0.2)
                continue
            assert response.status_code == 200, response.read()
            yield response
            return


def read_stream(
    base_url: str,
    key: str,
    *,
    last_event_id: int | None,
    stop_after_events: int | None,
    stop_after_comments: int,
    opened: threading.Event | None = None,
) -> Reading:
    """Reads one connection until it has ``stop_after_events`` events or ``stop_after_comments`` heartbeats."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    reading = Reading()
    fields: dict[str, str] = {}
    with _stream_admitted(base_url, headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                reading.comments.append(line[1:].strip())
                if reading.comments[-1] == "connected" and opened is not None:
                    opened.set()
                if sum(comment == "heartbeat" for comment in reading.comments) >= stop_after_comments:
                    return reading
            elif line == "":
                if "id" in fields:
                    reading.events.append(Event(int(fields["id"]), fields["event"], json.loads(fields["data"])))
                    if stop_after_events is not None and len(reading.events) >= stop_after_events:
                        return reading
                fields = {}
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return reading


@pytest.fixture(scope="module")
def apis(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ApiProcess]]:
    directory = tmp_path_factory.mktemp("live-feed")
    processes = [ApiProcess(database_url, redis_url, directory / f"api-{n}.log", extra_env=FEED_ENV) for n in (1, 2)]
    yield processes
    for process in processes:
        process.stop()


def chained_positions(database_url: str, merchant_id: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT position FROM audit_chain WHERE merchant_id = %s ORDER BY position", (merchant_id,)
        ).fetchall()
    return [row[0] for row in rows]


def feed_position(api: ApiProcess) -> float:
    """How far the process's live feed reader got (its ``/metrics``)."""
    for line in httpx.get(f"{api.base_url}/metrics", timeout=5).text.splitlines():
        if line.startswith("daybook_live_feed_position"):
            return float(line.split()[-1])
    return 0.0


def write_some(base_url: str, key: str, commands: int, seed: int, positions: list[int] | None = None) -> None:
    """Receipts, orders and cancels of a few SKUs; notes each answer's ``X-Daybook-Position``."""
    chooser = random.Random(seed)
    headers = {"Authorization": f"Bearer {key}"}
    skus = [f"FEED-{seed}-{n}" for n in range(3)]
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        answers = [http.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 1_000}) for sku in skus]
        for _ in range(commands):
            sku = chooser.choice(skus)
            line = {"sku": sku, "quantity": 1, "unit_price": {"amount": 500, "currency": "EUR"}}
            answers.append(http.post("/v1/orders", json={"lines": [line], "currency": "EUR"}))
            assert answers[-1].status_code == 201, answers[-1].text
            if chooser.random() < 0.3:
                answers.append(http.post(f"/v1/orders/{answers[-1].json()['id']}/cancel"))
    assert all(answer.status_code in (200, 201) for answer in answers)
    if positions is not None:
        positions += [int(answer.headers["X-Daybook-Position"]) for answer in answers]


def test_a_client_that_disconnects_at_random_and_resumes_on_either_process_sees_every_event_once(
    apis: list[ApiProcess], database_url: str
) -> None:
    merchant = apis[0].create_merchant("Feed follower")
    other = apis[0].create_merchant("Feed neighbour")
    acknowledged: list[int] = []
    writers = [
        threading.Thread(target=write_some, args=(apis[0].base_url, merchant["api_key"], 60, 1, acknowledged)),
        threading.Thread(target=write_some, args=(apis[1].base_url, merchant["api_key"], 60, 2, acknowledged)),
        threading.Thread(target=write_some, args=(apis[1].base_url, other["api_key"], 40, 3)),
    ]
    for writer in writers:
        writer.start()
    chooser = random.Random(7)
    received: list[Event] = []
    last: int | None = 0
    connections = 0
    while True:
        api = chooser.choice(apis)
        reading = read_stream(
            api.base_url,
            merchant["api_key"],
            last_event_id=last,
            stop_after_events=chooser.randint(1, 40),
            stop_after_comments=2,
        )
        connections += 1
        received += reading.events
        if received:
            last = received[-1].id
        if not any(writer.is_alive() for writer in writers) and not reading.events:
            break  # two heartbeats with nothing new after the writers finished
    for writer in writers:
        writer.join()

    positions = [event.id for event in received]
    assert connections > 5
    assert positions == chained_positions(database_url, merchant["merchant_id"])
    assert set(acknowledged) <= set(positions)
    assert not set(positions) & set(chained_positions(database_url, other["merchant_id"]))
    prev_hash = GENESIS_HASH
    for event in received:
        assert event.data["position"] == event.id
        assert event.data["type"] == event.type
        assert event.data["prev_hash"] == prev_hash
        assert event.data["hash"] == chain_hash(prev_hash, canonical(event_body(event.data)))
        prev_hash = event.data["hash"]


def test_without_last_event_id_a_stream_starts_at_the_live_head(apis: list[ApiProcess], database_url: str) -> None:
    merchant = apis[0].create_merchant("Feed late joiner")
    acknowledged: list[int] = []
    write_some(apis[0].base_url, merchant["api_key"], 3, 4, acknowledged)
    wait_for(lambda: feed_position(apis[1]) >= max(acknowledged), timeout_s=30, what="the feed to reach the writes")
    before = chained_positions(database_url, merchant["merchant_id"])
    result: list[Reading] = []
    opened = threading.Event()
    reader = threading.Thread(
        target=lambda: result.append(
            read_stream(
                apis[1].base_url,
                merchant["api_key"],
                last_event_id=None,
                stop_after_events=1,
                stop_after_comments=40,
                opened=opened,
            )
        )
    )
    reader.start()
    assert opened.wait(timeout=10)
    headers = {"Authorization": f"Bearer {merchant['api_key']}"}
    receipt = httpx.post(
        f"{apis[0].base_url}/v1/inventory/FEED-4-0/receipts", json={"quantity": 1}, headers=headers, timeout=10
    )
    assert receipt.status_code == 201
    reader.join(timeout=30)
    (reading,) = result
    assert [event.id for event in reading.events] == [int(receipt.headers["X-Daybook-Position"])]
    assert reading.events[0].id > before[-1]


def test_a_merchant_holding_its_connection_limit_across_processes_is_refused_with_429(
    apis: list[ApiProcess],
) -> None:
    merchant = apis[0].create_merchant("Feed hoarder")
    headers = {"Authorization": f"Bearer {merchant['api_key']}"}
    with httpx.Client(timeout=10) as http:
        # The context managers are kept: a collected one closes its stream.
        streams = [http.stream("GET", f"{apis[n % 2].base_url}/v1/events/stream", headers=headers) for n in range(3)]
        opened = [stream.__enter__() for stream in streams]
        try:
            assert [response.status_code for response in opened] == [200, 200, 200]
            refused = http.get(f"{apis[1].base_url}/v1/events/stream", headers=headers, timeout=5)
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["code"] == "rate_limited"
            assert "Retry-After" in refused.headers
        finally:
            for response in opened[:1]:
                response.close()

        def admitted() -> bool:
            with http.stream("GET", f"{apis[0].base_url}/v1/events/stream", headers=headers) as again:
                return again.status_code == 200

        assert wait_for(admitted, timeout_s=10, what="a freed connection slot")
        for response in opened[1:]:
            response.close()


def test_the_feed_refuses_auditor_keys_and_malformed_last_event_ids(apis: list[ApiProcess]) -> None:
    merchant = apis[0].create_merchant("Feed edges")
    url = f"{apis[0].base_url}/v1/events/stream"
    auditor = httpx.get(url, headers={"Authorization": f"Bearer {merchant['auditor_key']}"}, timeout=10)
    assert auditor.status_code == 403
    assert auditor.json()["code"] == "forbidden"
    bad_ids: list[str | bytes] = ["-1", "1.5", "abc", "", "9" * 30, "٣".encode()]  # an Arabic-Indic digit
    for bad in bad_ids:
        answer = httpx.get(
            url, headers={"Authorization": f"Bearer {merchant['api_key']}", "Last-Event-ID": bad}, timeout=10
        )
        assert answer.status_code == 400, bad
        assert answer.json()["code"] == "invalid_request", bad
    assert httpx.get(url, timeout=10).status_code == 401
    assert uuid.UUID(merchant["merchant_id"])


def test_a_stopping_api_closes_its_live_feeds_with_a_reason_and_stops_without_killing_its_workers(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    api = ApiProcess(database_url, redis_url, tmp_path / "api.log", extra_env=FEED_ENV)
    try:
        merchant = api.create_merchant()
        headers = {"Authorization": f"Bearer {merchant['api_key']}", "Accept": "text/event-stream"}
        comments: list[str] = []
        with _stream_admitted(api.base_url, headers) as response:
            lines = response.iter_lines()
            for line in lines:
                if line.startswith(":"):
                    comments.append(line[1:].strip())
                    if comments[-1] == "connected":
                        break
            api.process.send_signal(signal.SIGTERM)
            comments += [line[1:].strip() for line in lines if line.startswith(":")]  # until the server ends it
        assert any(comment.startswith("closed: the server is shutting down") for comment in comments), comments
        assert api.process.wait(timeout=30) == 0
        assert "refused to gracefully stop" not in api.log_path.read_text()
    finally:
        api.stop()
