"""Audit: chain projection speed and lag, export (HTTP NDJSON and CLI), offline verify, each beside the plain way.

    .venv/bin/python bench/audit.py [--events 500000] [--rate 5000] [--seconds 15] [--plain-events 20000]

One run, one fresh database on the embedded servers (or DAYBOOK_DATABASE_URL /
DAYBOOK_REDIS_URL). ``--events`` events of one merchant (orders placed and cancelled,
holds and releases on one SKU: real stored states, made by the domain once and copied
under new stream ids) are COPYed into the event store, not sent over HTTP. Then:

(1) chain catch-up: our chain projection (batches of 2,000, msgspec canonical JSON, one
    COPY per batch) over every event, beside the plain way (``json.dumps(sort_keys=True)``
    and ``hashlib`` per event, one INSERT and one commit per event) over ``--plain-events``;
(2) lag at ``--rate`` events/s: a writer inserts through the event-store recorder (50
    events per insert), a follower process chains them (ours: the real runner, woken by
    LISTEN/NOTIFY; plain: per event, polling); lag = commit → tracking at or past it;
(3) export: ``GET /v1/audit/events`` as NDJSON from a real ``daybook api`` process, and
    ``daybook audit export`` (a process), beside the plain way (the same pages, each line
    ``json.dumps(sort_keys=True)``) in this process;
(4) offline verify of the exported file: ``daybook audit verify``'s code beside
    ``json.loads`` + ``json.dumps(sort_keys=True)`` + ``hashlib`` per line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import StoredEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters import audit_store
from adapters.audit_events import event_shape
from adapters.database import eventsourcing_env
from adapters.settings import Settings
from bench.common import api_process, bench_servers, create_merchant
from daybook.audit_cli import verify_file
from domain.application import Daybook
from domain.commands import CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.money import Money
from domain.orders import OrderLine
from projections.audit_chain import AuditChainProjection
from projections.audit_digests import DigestSigner
from projections.runner import ProjectionRunner

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.005
WRITE_BATCH = 50
PLAIN = "plain_chain"


# --- events -------------------------------------------------------------------------------


def templates(merchant_id: uuid.UUID) -> list[StoredEvent]:
    """One order placed and cancelled on a stocked SKU, as stored by the real mapper."""
    app = Daybook(
        env={"PERSISTENCE_MODULE": "eventsourcing.popo", "MAPPER_TOPIC": "adapters.event_store:MsgspecMapper"}
    )
    context = CommandContext(actor="api_key:bench", request_id="bench-audit", causation_id="bench-cause")
    app.execute(ReceiveStock(context, merchant_id, "SKU-AUDIT", 10**9))
    order_id = uuid.uuid4()
    line = OrderLine("SKU-AUDIT", 2, Money(1_999, "EUR"))
    app.execute(PlaceOrder(context, merchant_id, order_id, [line], "EUR", customer_ref="Zoë ☕ bench"))
    app.execute(CancelOrder(context, merchant_id, order_id))
    notes = app.recorder.select_notifications(start=1, limit=100)
    return [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in notes]


def generated(merchant_id: uuid.UUID, count: int) -> Iterator[tuple[uuid.UUID, int, str, bytes]]:
    """``count`` rows: the template's item events first, then orders (placed, held, cancelled, released)."""
    events = templates(merchant_id)
    item = [e for e in events if e.topic.endswith(("Registered", "StockReceived"))]
    item_id = item[0].originator_id
    placed, held, cancelled, released = (
        next(e for e in events if e.topic.endswith(suffix))
        for suffix in ("Order.Placed", "StockHeld", "Order.Cancelled", "StockReleased")
    )
    for event in item:
        yield event.originator_id, event.originator_version, event.topic, event.state
    version, made = len(item), len(item)
    while made < count:
        order_id = uuid.uuid4()
        yield order_id, 1, placed.topic, placed.state
        yield item_id, version + 1, held.topic, held.state
        yield order_id, 2, cancelled.topic, cancelled.state
        yield item_id, version + 2, released.topic, released.state
        version += 2
        made += 4


def load(database_url: str, merchant_id: uuid.UUID, count: int) -> float:
    started = time.monotonic()
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        copy_sql = "COPY daybook_events (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(copy_sql) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for row in generated(merchant_id, count):
                copy.write_row(row)
    return time.monotonic() - started


# --- the plain chain: one event, one transaction --------------------------------------------


def plain_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plain_chain(app: Daybook, database_url: str, limit: int | None, stop: threading.Event | None = None) -> int:
    """Chains into ``plain_chain`` event by event (its own tracking row); returns events chained."""
    done = 0
    last: dict[uuid.UUID, str] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO projection_tracking (projection, notification_id) VALUES (%s, 0) ON CONFLICT DO NOTHING",
            (PLAIN,),
        )
        (position,) = conn.execute(
            "SELECT notification_id FROM projection_tracking WHERE projection = %s", (PLAIN,)
        ).fetchone() or (0,)
        while (limit is None or done < limit) and not (stop and stop.is_set()):
            notes = app.recorder.select_notifications(start=position, limit=500, inclusive_of_start=False)
            if not notes:
                time.sleep(POLL_S)
                continue
            for note in notes:
                event: Any = app.mapper.to_domain_event(note)
                shape = event_shape(note.id, event)
                prev = last.get(event.merchant_id, "0" * 64)
                digest = hashlib.sha256(bytes.fromhex(prev) + plain_canonical(shape)).hexdigest()
                last[event.merchant_id] = digest
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO plain_chain (position, merchant_id, stream_id, version, hash, prev_hash) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (
                            note.id,
                            event.merchant_id,
                            note.originator_id,
                            note.originator_version,
                            bytes.fromhex(digest),
                            bytes.fromhex(prev),
                        ),
                    )
                    conn.execute(
                        "UPDATE projection_tracking SET notification_id = %s WHERE projection = %s", (note.id, PLAIN)
                    )
                position, done = note.id, done + 1
                if limit is not None and done >= limit:
                    break
    return done


def follow(database_url: str, plain: bool) -> None:
    """``--follow``: a follower process, until SIGTERM."""
    app = Daybook(env=eventsourcing_env(database_url, Settings()))
    if plain:
        plain_chain(app, database_url, None)
        return
    signer = DigestSigner(Ed25519PrivateKey.generate(), interval_seconds=60, interval_events=10_000)
    runner = ProjectionRunner(app, database_url, [AuditChainProjection(app, signer=signer)])
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    runner.run_forever()


# --- lag under a write rate ----------------------------------------------------------------


def tracked(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("SELECT notification_id FROM projection_tracking WHERE projection = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def lag_run(
    app: Daybook, database_url: str, merchant_id: uuid.UUID, *, plain: bool, rate: int, seconds: float
) -> dict[str, float]:
    name = PLAIN if plain else AuditChainProjection.default_name
    with psycopg.connect(database_url, autocommit=True) as conn:
        start_head = app.recorder.max_notification_id() or 0
        follower = subprocess.Popen(
            [sys.executable, __file__, "--follow", database_url, *(["--plain"] if plain else [])], cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 120
            while tracked(conn, name) < start_head:  # caught up before the clock starts
                if time.monotonic() > deadline or follower.poll() is not None:
                    raise RuntimeError("the follower did not catch up")
                time.sleep(0.05)
            events = [e for e in templates(merchant_id) if e.topic.endswith(("Order.Placed", "Order.Cancelled"))]
            commits: list[tuple[int, float]] = []
            lags: list[float] = []
            stop = threading.Event()

            def poll() -> None:
                with psycopg.connect(database_url, autocommit=True) as poller:
                    index = 0
                    while not stop.is_set() or index < len(commits):
                        reached, now = tracked(poller, name), time.monotonic()
                        while index < len(commits) and commits[index][0] <= reached:
                            lags.append(now - commits[index][1])
                            index += 1
                        if stop.is_set() and now > end + 30:
                            break
                        time.sleep(POLL_S)

            end = time.monotonic() + seconds
            poller = threading.Thread(target=poll)
            poller.start()
            interval, next_at, written = WRITE_BATCH / rate, time.monotonic(), 0
            while time.monotonic() < end:
                batch = []
                for _ in range(WRITE_BATCH // 2):
                    order_id = uuid.uuid4()
                    batch += [
                        StoredEvent(order_id, 1, events[0].topic, events[0].state),
                        StoredEvent(order_id, 2, events[1].topic, events[1].state),
                    ]
                ids = app.recorder.insert_events(batch)
                assert ids
                commits.append((ids[-1], time.monotonic()))
                written += len(batch)
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            achieved = written / seconds
            stop.set()
            poller.join()
        finally:
            follower.terminate()
            follower.wait(timeout=30)
    lags.sort()
    pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000 if lags else float("nan")  # noqa: E731
    return {
        "rate": achieved,
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
        "batches": len(commits),
        "seen": len(lags),
    }


# --- export and verify ---------------------------------------------------------------------


def http_export(base_url: str, key: str, out: Path) -> float:
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/x-ndjson"}
    with (
        httpx.stream("GET", f"{base_url}/v1/audit/events", headers=headers, timeout=600) as answer,
        out.open("wb") as file,
    ):
        answer.raise_for_status()
        for chunk in answer.iter_bytes(1 << 20):
            file.write(chunk)
    return time.monotonic() - started


def cli_export(database_url: str, redis_url: str, merchant_id: uuid.UUID, out: Path) -> float:
    env = {**os.environ, "DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url}
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "daybook", "audit", "export", "--merchant", str(merchant_id), "--out", str(out)],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


# The plain export decodes every stored event (it reads the states, never the chain's shapes).
_PLAIN_PAGE = (
    "SELECT c.position, c.stream_id, c.version, c.hash, c.prev_hash, e.topic, e.state FROM audit_chain c "
    "LEFT JOIN daybook_events e ON e.notification_id = c.position AND e.notification_id > %(after)s "
    "WHERE c.merchant_id = %(merchant)s AND c.position > %(after)s ORDER BY c.position LIMIT 2000"
)


def plain_export(app: Daybook, database_url: str, merchant_id: uuid.UUID, out: Path, limit: int) -> tuple[int, float]:
    started, written, position = time.monotonic(), 0, 0
    with psycopg.connect(database_url, autocommit=True) as conn, out.open("wb") as file:
        while written < limit:
            rows = conn.execute(_PLAIN_PAGE, {"merchant": merchant_id, "after": position}, prepare=True).fetchall()
            if not rows:
                break
            for row in rows:
                file.write(plain_canonical(audit_store.exported(app.mapper, row)) + b"\n")
            written, position = written + len(rows), rows[-1][0]
    return written, time.monotonic() - started


def same_events(ours: Path, plain: Path, every: int = 100) -> str:
    """Whether every ``every``-th line of both exports is the same event (ours read from the chain's shapes)."""
    with ours.open("rb") as a, plain.open("rb") as b:
        for number, (line, plain_line) in enumerate(zip(a, b, strict=True)):
            if number % every == 0 and json.loads(line) != json.loads(plain_line):
                return f"DIFFERENT EVENT at line {number + 1}"
    return f"same events as ours (every {every}th line compared)"


def plain_verify(path: Path) -> tuple[int, bool]:
    prev, count = "0" * 64, 0
    with path.open("rb") as file:
        for line in file:
            event = json.loads(line)
            stated, stated_prev = event.pop("hash"), event.pop("prev_hash")
            if (
                stated_prev != prev
                or hashlib.sha256(bytes.fromhex(prev) + plain_canonical(event)).hexdigest() != stated
            ):
                return count, False
            prev, count = stated, count + 1
    return count, True


def row(name: str, count: int, seconds: float, note: str = "") -> str:
    return f"{name:<58} {count:>9,} events {seconds:>7.2f} s {count / seconds:>10,.0f} ev/s  {note}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--plain-events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--follow", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.follow:
        follow(args.follow, args.plain)
        return
    print(f"load average at start: {os.getloadavg()}")
    with bench_servers() as (database_url, redis_url), api_process(database_url, redis_url) as base_url:
        merchant = create_merchant(base_url)
        merchant_id = uuid.UUID(merchant["merchant_id"])
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {PLAIN} (LIKE audit_chain)")
        seconds = load(database_url, merchant_id, args.events)
        app = Daybook(env=eventsourcing_env(database_url, Settings()))
        head = app.recorder.max_notification_id() or 0
        lines = [row("load (COPY of generated stored events)", head, seconds)]

        signer = DigestSigner(Ed25519PrivateKey.generate(), interval_seconds=60, interval_events=10_000)
        runner = ProjectionRunner(app, database_url, [])
        started = time.monotonic()
        chained = runner.catch_up(AuditChainProjection(app, signer=signer))
        ours_chain = row("(1) chain catch-up, ours (batched, msgspec, COPY)", chained, time.monotonic() - started)
        started = time.monotonic()
        plain_done = plain_chain(app, database_url, args.plain_events)
        plain_chain_line = row(
            "(1) chain catch-up, plain (json.dumps+hashlib, 1 txn/event)", plain_done, time.monotonic() - started
        )
        lines += [ours_chain, plain_chain_line]
        print("\n".join(lines[-2:]), flush=True)

        lag_ours = lag_run(app, database_url, merchant_id, plain=False, rate=args.rate, seconds=args.seconds)
        with psycopg.connect(database_url, autocommit=True) as conn:  # the plain follower starts at the head too
            conn.execute(
                "UPDATE projection_tracking SET notification_id = %s WHERE projection = %s",
                (app.recorder.max_notification_id(), PLAIN),
            )
        lag_plain = lag_run(app, database_url, merchant_id, plain=True, rate=args.rate, seconds=args.seconds)
        for label, lag in (("ours", lag_ours), ("plain", lag_plain)):
            lines.append(
                f"(2) lag at {lag['rate']:,.0f} ev/s, {label:<6} p50 {lag['p50_ms']:8.1f} ms  "
                f"p99 {lag['p99_ms']:8.1f} ms  max {lag['max_ms']:8.1f} ms  "
                f"({lag['seen']}/{lag['batches']} inserts seen)"
            )
            print(lines[-1], flush=True)

        directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"daybook-bench-audit-{uuid.uuid4().hex[:8]}"
        directory.mkdir()
        http_file, cli_file, plain_file = (
            directory / "http.ndjson",
            directory / "cli.ndjson",
            directory / "plain.ndjson",
        )
        with psycopg.connect(database_url, autocommit=True) as conn:
            # What autovacuum does soon after a bulk load in a deployment: statistics for the
            # planner (without them a page of the export may be planned as a sort of the rest).
            conn.execute("ANALYZE daybook_events")
            conn.execute("ANALYZE audit_chain")
        seconds = http_export(base_url, merchant["auditor_key"], http_file)
        exported = sum(1 for _ in http_file.open("rb"))
        lines.append(row("(3) export, ours: GET /v1/audit/events NDJSON (api process)", exported, seconds))
        seconds = cli_export(database_url, redis_url, merchant_id, cli_file)
        lines.append(
            row(
                "(3) export, ours: daybook audit export (process, incl. start)",
                exported,
                seconds,
                "same bytes" if cli_file.read_bytes() == http_file.read_bytes() else "DIFFERENT BYTES",
            )
        )
        count, seconds = plain_export(app, database_url, merchant_id, plain_file, exported)
        same = same_events(cli_file, plain_file)
        lines.append(row("(3) export, plain: same pages, json.dumps(sort_keys) per line", count, seconds, same))
        print("\n".join(lines[-3:]), flush=True)

        started = time.monotonic()
        outcome = verify_file(cli_file, None)
        lines.append(
            row(
                "(4) offline verify, ours (daybook audit verify's code)",
                outcome.events,
                time.monotonic() - started,
                "ok" if outcome.mismatch is None else str(outcome.mismatch),
            )
        )
        started = time.monotonic()
        count, ok = plain_verify(cli_file)
        lines.append(
            row(
                "(4) offline verify, plain (json + hashlib per line)",
                count,
                time.monotonic() - started,
                "ok" if ok else "FAILED",
            )
        )
        app.close()
        for path in (http_file, cli_file, plain_file):
            path.unlink()
        directory.rmdir()
    print()
    print("\n".join(lines))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
