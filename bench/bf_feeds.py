"""Readers of the Black Friday run: SSE clients following the live feed, and an auditor.

Both are written against CONTRACT.md ("Live feed", "Audit") and run only when the API
serves those routes (``OPTIONS`` answers 204): a build without them reports the
invariants as not checked.

- SSE clients (two per merchant) follow ``GET /v1/events/stream`` from the first event
  (``Last-Event-ID: 0``) and, whenever the stream ends or breaks (an API process killed,
  a database restart), reconnects with the last id it saw, as a browser's EventSource
  does. It keeps every id in the order received and checks the events as a hash chain
  (each carries ``hash`` and ``prev_hash``): a gap, a repeat or a changed event breaks it.
- The auditor exports each merchant's stream as NDJSON and asks the server to verify the
  chain every few seconds during the load; at the end it exports with ``daybook audit
  export`` and verifies the file offline against the last signed digest with ``daybook
  audit verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.bf_checks import Result, Run
from bench.bf_load import Merchant, Traffic
from domain.audit import ChainVerifier

STREAM_PATH = "/v1/events/stream"
VERIFY_PATH = "/v1/audit/verify"
READ_TIMEOUT_S = 40.0  # more than two heartbeats (one at least every 15 s)
CATCH_UP_TIMEOUT_S = 120.0
AUDIT_INTERVAL_S = 10.0


async def route_exists(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> bool:
    """Whether the API has ``path`` (``OPTIONS`` is 204 on every route, 404 elsewhere)."""
    response = await http.request("OPTIONS", path, headers=headers)
    return response.status_code == 204


@dataclass
class SseClient:
    """One merchant's follower of the live feed, and everything it received."""

    merchant: Merchant
    ids: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    connections: int = 0
    streams: int = 0
    """Streams opened (200): the first, then one per resume."""
    refused: int = 0
    target: int | None = None
    """Stop once this id is received (set after the drain); ``None`` while the load runs."""
    chain: ChainVerifier = field(default_factory=ChainVerifier)
    """The events received, checked as a hash chain (a gap or a repeat breaks it too)."""

    @property
    def last_id(self) -> int:
        return self.ids[-1] if self.ids else 0

    async def follow(self, traffic: Traffic, stop: asyncio.Event) -> None:
        """Reads the feed until ``stop`` is set and ``target`` is reached (or the catch-up deadline)."""
        deadline: float | None = None
        while True:
            if stop.is_set():
                deadline = deadline or time.monotonic() + CATCH_UP_TIMEOUT_S
                if (self.target is not None and self.last_id >= self.target) or time.monotonic() > deadline:
                    return
            with contextlib.suppress(httpx.HTTPError, asyncio.TimeoutError):
                await asyncio.wait_for(self._read(traffic, stop), timeout=READ_TIMEOUT_S * 4)
            await asyncio.sleep(0.2)

    async def _read(self, traffic: Traffic, stop: asyncio.Event) -> None:
        headers = {**self.merchant.headers, "Accept": "text/event-stream", "Last-Event-ID": str(self.last_id)}
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
        self.connections += 1
        started = time.perf_counter()
        async with traffic.http.stream("GET", STREAM_PATH, headers=headers, timeout=timeout) as response:
            endpoint = traffic.evidence.endpoints["GET events/stream (connect)"]
            endpoint.latencies_s.append(time.perf_counter() - started)
            endpoint.statuses[response.status_code] += 1
            if response.status_code == 429:
                self.refused += 1
                await asyncio.sleep(1.0)
                return
            if response.status_code != 200:
                return
            self.streams += 1
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    self._dispatch(event)
                    event = {}
                    if stop.is_set() and self.target is not None and self.last_id >= self.target:
                        return
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")

    def _dispatch(self, event: dict[str, str]) -> None:
        if "data" not in event:
            return
        try:
            position = int(event.get("id", ""))
            data = json.loads(event["data"])
        except ValueError:
            self.bad.append(f"unreadable event {event!r:.200}")
            return
        if data.get("position") != position or data.get("type") != event.get("event"):
            self.bad.append(f"id {position} / event {event.get('event')} disagree with data {event['data']:.200}")
        was_ok = self.chain.ok
        mismatch = self.chain.check(data)
        if was_ok and mismatch is not None:
            self.bad.append(f"the events received break the hash chain at {mismatch.position}: {mismatch.reason}")
        self.ids.append(position)


@dataclass
class Auditor:
    """Exports and verifies every merchant's chain during the load."""

    merchants: list[Merchant]
    failures: list[str] = field(default_factory=list)
    exports: int = 0
    verifications: int = 0

    def _headers(self, merchant: Merchant) -> dict[str, str]:
        return {"Authorization": f"Bearer {merchant.created['auditor_key']}"}

    async def run(self, traffic: Traffic, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for merchant in self.merchants:
                await self._export(traffic, merchant)
                await self._verify(traffic, merchant)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=AUDIT_INTERVAL_S)

    async def _export(self, traffic: Traffic, merchant: Merchant) -> None:
        headers = {**self._headers(merchant), "Accept": "application/x-ndjson"}
        response = await traffic.send("GET audit/events (ndjson)", "GET", "/v1/audit/events", headers=headers,
                                      timeout=httpx.Timeout(60.0))  # fmt: skip
        if response is not None and response.status_code == 200:
            self.exports += 1

    async def _verify(self, traffic: Traffic, merchant: Merchant) -> None:
        response = await traffic.send("GET audit/verify", "GET", VERIFY_PATH, headers=self._headers(merchant),
                                      timeout=httpx.Timeout(60.0))  # fmt: skip
        if response is None or response.status_code != 200:
            return
        self.verifications += 1
        body = response.json()
        if body.get("ok") is not True:
            self.failures.append(f"merchant {merchant.merchant_id}: verify during the load said {body}")


def merchant_positions(database_url: str, merchant: Merchant) -> list[int]:
    """Every position of the merchant's chained events (the feed sends an event once it is chained)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT position FROM audit_chain WHERE merchant_id = %s ORDER BY position", (merchant.merchant_id,)
        ).fetchall()
    return [int(row[0]) for row in rows]


def sse_check(clients: list[SseClient], expected: dict[str, list[int]]) -> Any:
    """The check of ``bench/bf_checks.py``: each client's ids are its merchant's positions, once each, in order."""

    def check(run: Run) -> Result:
        del run
        problems: list[str] = []
        received = 0
        for client in clients:
            want = expected[client.merchant.merchant_id]
            received += len(client.ids)
            problems += [f"merchant {client.merchant.merchant_id}: {bad}" for bad in client.bad[:3]]
            if client.ids != want:
                repeated = len(client.ids) - len(set(client.ids))
                missing = sorted(set(want) - set(client.ids))
                extra = sorted(set(client.ids) - set(want))
                problems.append(
                    f"merchant {client.merchant.merchant_id}: {len(client.ids)} events received, {len(want)} "
                    f"expected; {repeated} repeated, missing {missing[:5]}, not the merchant's {extra[:5]}, "
                    f"in order: {client.ids == sorted(client.ids)}"
                )
        resumed = sum(client.streams for client in clients) - len(clients)
        detail = f"{len(clients)} clients, {received} events received, {resumed} resumes with Last-Event-ID"
        name = "every SSE client saw every event once"
        if problems:
            return Result(name, False, f"{len(problems)} violation(s); {detail}", problems[:5])
        return Result(name, True, detail)

    return check


def audit_check(auditor: Auditor, base_url: str, env: dict[str, str], directory: Path) -> Any:
    """The check: server-side verify, then ``daybook audit export`` and offline ``verify`` against the digest."""

    def check(run: Run) -> Result:
        del run
        problems = list(auditor.failures)
        checked = 0
        for merchant in auditor.merchants:
            headers = {"Authorization": f"Bearer {merchant.created['auditor_key']}"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
                verdict = http.get(VERIFY_PATH).json()
                digest = http.get("/v1/audit/digest").json()
            if verdict.get("ok") is not True:
                problems.append(f"merchant {merchant.merchant_id}: GET /v1/audit/verify said {verdict}")
            checked += int(verdict.get("events_checked", 0))
            problems += _offline(merchant, digest, env, directory)
        detail = (
            f"{checked} events verified by the server; export + offline verify against the last digest for "
            f"{len(auditor.merchants)} merchants; {auditor.exports} exports and {auditor.verifications} "
            "verifications during the load"
        )
        name = "audit chain verifies against the last digest"
        if problems:
            return Result(name, False, f"{len(problems)} violation(s); {detail}", problems[:5])
        return Result(name, True, detail)

    return check


def _offline(merchant: Merchant, digest: dict[str, Any], env: dict[str, str], directory: Path) -> list[str]:
    export = directory / f"audit-{merchant.merchant_id}.ndjson"
    digest_path = directory / f"digest-{merchant.merchant_id}.json"
    digest_path.write_text(json.dumps(digest))
    daybook = [sys.executable, "-m", "daybook", "audit"]
    exported = subprocess.run([*daybook, "export", "--merchant", merchant.merchant_id, "--out", str(export)],
                              env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    if exported.returncode != 0:
        return [f"merchant {merchant.merchant_id}: daybook audit export exited {exported.returncode}: "
                f"{exported.stderr[-300:]}"]  # fmt: skip
    verified = subprocess.run([*daybook, "verify", str(export), "--digest", str(digest_path)],
                              env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    if verified.returncode != 0:
        return [f"merchant {merchant.merchant_id}: daybook audit verify exited {verified.returncode}: "
                f"{(verified.stdout + verified.stderr)[-300:]}"]  # fmt: skip
    return []
