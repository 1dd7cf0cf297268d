"""Cold start of a long-lived SKU: the first order after a restart, with snapshots and without.

    .venv/bin/python bench/cold_start.py [--events 1000000] [--restarts 3] [--seconds 4] [--rounds 4]

One run, one database:

1. The cost on the hot path, first (this process is still small): in-process
   group-commit holds/s on a fresh hot SKU with snapshots off, on (the default
   interval) and on every 100 events, rounds alternated; with the committer thread's
   own time spent on snapshots.
2. A SKU gains ``--events`` real events (a receipt, then holds each released or, one
   in four, committed), made by the domain's own command methods, mapped by the msgspec
   mapper and COPYed into the events table (the group committer would take minutes).
3. In-process group committer: the latency of the first command on that SKU in a fresh
   application, with snapshots off (the whole history is replayed), on with none stored
   yet (the same; the committer then snapshots what it holds), and on.
4. Over HTTP: the real ``daybook api`` process started afresh, then the latency of the
   first ``POST /v1/orders`` on that SKU, with ``DAYBOOK_SNAPSHOTS=false`` (once: it
   takes many seconds) and with snapshots (``--restarts`` times), beside the first order
   on a SKU of ten events after a restart (what a first request costs anyway).
5. The oversell check: the SKU replayed from all its events holds exactly the
   acknowledged orders.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from eventsourcing.persistence import JSONTranscoder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import eventsourcing_env
from adapters.event_store import MsgspecMapper
from adapters.runtime import tune_gc
from adapters.settings import Settings
from bench.common import Figures, api_process, bench_servers, create_merchant, place_orders_in_process
from domain import limits
from domain.application import Daybook
from domain.commands import PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.inventory import InventoryItem, inventory_item_id
from domain.money import Money
from domain.orders import OrderLine

SKU = "LONG-1"
SMALL_SKU = "SMALL-1"
STOCK = 1_000_000_000
CONTEXT = CommandContext(actor="bench", request_id="cold-start")
ORDER_BODY = {
    "lines": [{"sku": SKU, "quantity": 1, "unit_price": {"amount": 500, "currency": "EUR"}}],
    "currency": "EUR",
}
COPY_CHUNK = 50_000


def write_history(database_url: str, merchant_id: uuid.UUID, events: int) -> int:
    """Gives the SKU ``events`` events (receipt, then holds committed or released); returns its version."""
    mapper = MsgspecMapper(transcoder=JSONTranscoder())
    moment = datetime.now(UTC) - timedelta(days=2)
    step = timedelta(microseconds=50)

    def context() -> CommandContext:
        nonlocal moment
        moment += step
        return replace(CONTEXT, occurred_at=moment)

    item = InventoryItem.register(merchant_id, SKU, context())
    item.receive(STOCK, "bench", context())
    written = orders = 0
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        while item.version < events:
            while item.version < min(events, written + COPY_CHUNK) - 1:
                order_id, orders = uuid.uuid4(), orders + 1
                held = context()
                item.hold(order_id, 1, held.instant + timedelta(minutes=15), held)
                if orders % 4:
                    item.release(order_id, "cancelled", context())
                else:  # one order in four is paid
                    item.commit(order_id, context())
            stored = [mapper.to_stored_event(event) for event in item.collect_events()]
            with conn.cursor().copy(
                "COPY daybook_events (originator_id, originator_version, topic, state) FROM STDIN"
            ) as copy:
                for event in stored:
                    copy.write_row((event.originator_id, event.originator_version, event.topic, event.state))
            written = item.version
            conn.commit()
        conn.execute("ANALYZE daybook_events")
        conn.commit()
    print(f"wrote {item.version:,} events of {SKU} in {time.perf_counter() - started:.1f} s", flush=True)
    return item.version


def app_env(database_url: str, *, snapshots: bool, interval: int | None = None) -> dict[str, str]:
    """The Daybook environment of the API, snapshots on or off."""
    env = eventsourcing_env(database_url, Settings(snapshots=snapshots))
    if interval is not None:
        env["SNAPSHOT_INTERVAL_EVENTS"] = str(interval)
    return env


def first_command_ms(database_url: str, merchant_id: uuid.UUID, *, snapshots: bool) -> tuple[float, str]:
    """The first order on the SKU through a fresh application's group committer."""
    app = Daybook(env=app_env(database_url, snapshots=snapshots))
    line = (OrderLine(SKU, 1, Money(500, "EUR")),)
    try:
        with GroupCommitter(app) as committer:
            started = time.perf_counter()
            committer.submit(PlaceOrder(CONTEXT, merchant_id, uuid.uuid4(), line, "EUR")).result(600)
            elapsed_ms = (time.perf_counter() - started) * 1000
        note = ""
        if app.snapshotting is not None:
            app.snapshotting.writer.flush(60)
            metrics = app.snapshotting.metrics
            note = f"restored from a snapshot {metrics.restored_total}, snapshots taken {metrics.taken_total}"
        return elapsed_ms, note
    finally:
        app.close()


def first_order_over_http(
    database_url: str, redis_url: str, api_key: str, sku: str, *, snapshots: bool
) -> tuple[float, float]:
    """(first, second) order latency in ms on ``sku`` right after ``daybook api`` started."""
    body = {**ORDER_BODY, "lines": [{**ORDER_BODY["lines"][0], "sku": sku}]}  # type: ignore[index]
    headers = {"Authorization": f"Bearer {api_key}"}
    env = {"DAYBOOK_SNAPSHOTS": "true" if snapshots else "false"}
    with (
        api_process(database_url, redis_url, **env) as base_url,
        httpx.Client(base_url=base_url, timeout=600) as client,
    ):
        latencies = []
        for _ in range(2):
            started = time.perf_counter()
            response = client.post("/v1/orders", json=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 201:
                raise RuntimeError(f"order on {sku}: {response.status_code} {response.text}")
    return latencies[0], latencies[1]


def hot_path(database_url: str, seconds: float, clients: int, *, snapshots: bool, interval: int | None) -> Figures:
    """Group-commit holds/s on a fresh hot SKU, in-process (as ``bench/hot_sku.py`` (3))."""
    label = (
        "off" if not snapshots else f"on, every {interval or limits.INVENTORY_ITEM_SNAPSHOT_INTERVAL_EVENTS:,} events"
    )
    figures = Figures(f"snapshots {label}")
    settings = Settings()
    app = Daybook(env=app_env(database_url, snapshots=snapshots, interval=interval))
    merchant_id = uuid.uuid4()
    app.execute(ReceiveStock(CONTEXT, merchant_id, "HOT-1", STOCK))
    snapshot_work_s: list[float] = []
    if app.snapshotting is not None:  # the committer thread's own time spent on snapshots
        after_save = app.snapshotting.after_save

        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            taken = after_save(*args)
            snapshot_work_s.append(time.perf_counter() - started)
            return taken

        app.snapshotting.after_save = timed  # type: ignore[method-assign]
    committer = GroupCommitter(app, batch_size_max=settings.batch_size_max, batch_wait_ms=settings.batch_wait_ms)
    committer.start()
    line = (OrderLine("HOT-1", 1, Money(500, "EUR")),)

    place_orders_in_process(committer, CONTEXT, merchant_id, line, seconds, clients, figures)
    committer.stop()
    if app.snapshotting is not None:
        app.snapshotting.writer.flush(60)
        taken, written = app.snapshotting.metrics.taken_total, app.snapshotting.writer.metrics.written_total
        work_ms, largest_ms = sum(snapshot_work_s) * 1000, max(snapshot_work_s, default=0) * 1000
        figures.check = (
            f"snapshots {taken} (written {written}); committer thread on snapshots {work_ms:.1f} ms "
            f"({work_ms / 10 / figures.seconds:.2f} % of the round), longest save {largest_ms:.1f} ms"
        )
    level = app.get_inventory_level(merchant_id, "HOT-1")
    if level.reserved != figures.succeeded:
        figures.check += f" MISMATCH reserved {level.reserved} vs {figures.succeeded}"
    app.close()
    return figures


def rounds(database_url: str, seconds: float, clients: int, count: int) -> Iterator[Figures]:
    """Alternates the three configurations ``count`` times, so drift of the machine hits all."""
    for _ in range(count):
        yield hot_path(database_url, seconds, clients, snapshots=False, interval=None)
        yield hot_path(database_url, seconds, clients, snapshots=True, interval=None)
        yield hot_path(database_url, seconds, clients, snapshots=True, interval=100)


def check_no_oversell(database_url: str, merchant_id: uuid.UUID, acknowledged: int) -> str:
    """Replays the SKU from every event: its reserved units are exactly the acknowledged orders."""
    app = Daybook(env=app_env(database_url, snapshots=False))
    try:
        item: Any = app.replay(inventory_item_id(merchant_id, SKU))
        item.check_holds()
        ok = item.reserved == acknowledged and item.reserved <= item.on_hand
        found = f"reserved {item.reserved}, acknowledged {acknowledged}, on hand {item.on_hand}"
        return ("no oversell: " if ok else "OVERSOLD/MISMATCH: ") + found
    finally:
        app.close()


def main() -> None:
    """Runs every measurement and prints them side by side."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--restarts", type=int, default=3, help="restarts per case with snapshots (1 without)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per hot-path round")
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4, help="hot-path rounds of each configuration")
    args = parser.parse_args()
    tune_gc()
    with bench_servers() as (database_url, redis_url):
        # First, while this process is fresh (the cold loads below allocate gigabytes).
        hot = list(rounds(database_url, args.seconds, args.clients, args.rounds))
        with api_process(database_url, redis_url) as base_url:
            merchant = create_merchant(base_url)
            api_key, merchant_id = merchant["api_key"], uuid.UUID(merchant["merchant_id"])
            receipt = httpx.post(
                f"{base_url}/v1/inventory/{SMALL_SKU}/receipts",
                json={"quantity": 1_000},
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=30,
            )
            receipt.raise_for_status()
        version = write_history(database_url, merchant_id, args.events)
        in_process = {
            "off": [first_command_ms(database_url, merchant_id, snapshots=False)],
            "on, none stored yet": [first_command_ms(database_url, merchant_id, snapshots=True)],
            "on": [first_command_ms(database_url, merchant_id, snapshots=True) for _ in range(args.restarts)],
        }
        http = {
            "off": [first_order_over_http(database_url, redis_url, api_key, SKU, snapshots=False)],
            "on": [
                first_order_over_http(database_url, redis_url, api_key, SKU, snapshots=True)
                for _ in range(args.restarts)
            ],
            "on, a SKU of 10 events": [
                first_order_over_http(database_url, redis_url, api_key, SMALL_SKU, snapshots=True)
                for _ in range(args.restarts)
            ],
        }
        # One order per in-process run, two per restart on the SKU.
        acknowledged = sum(map(len, in_process.values())) + 2 * (len(http["off"]) + len(http["on"]))
        check = check_no_oversell(database_url, merchant_id, acknowledged)
    print(f"\ncold start of a SKU with {version:,} events ({time.strftime('%Y-%m-%d %H:%M')})")
    print("in-process group committer, first command on the SKU (median of fresh applications):")
    for name, runs in in_process.items():
        median_ms = statistics.median(elapsed for elapsed, _ in runs)
        print(
            f"  snapshots {name:<24} {median_ms:>10.1f} ms   runs {values_line([ms for ms, _ in runs])}   {runs[-1][1]}"
        )
    print("over HTTP, right after `daybook api` started (median of restarts: first order, second order):")
    for name, orders in http.items():
        first_ms, second_ms = statistics.median(o[0] for o in orders), statistics.median(o[1] for o in orders)
        print(
            f"  snapshots {name:<24} {first_ms:>10.1f} ms  {second_ms:>8.1f} ms   "
            f"first orders {values_line([o[0] for o in orders])}"
        )
    off_http, on_http = http["off"][0][0], statistics.median(o[0] for o in http["on"])
    off_in, on_in = in_process["off"][0][0], statistics.median(ms for ms, _ in in_process["on"])
    print(f"  without / with snapshots: {off_http / on_http:,.0f}x over HTTP, {off_in / on_in:,.0f}x in-process")
    print(f"  {check}")
    print(f"\nhot path: in-process group commit on a hot SKU, {args.clients} callers, {args.seconds:.0f} s rounds")
    for figures in hot:
        print(f"  {figures.line()}")
    by_name: dict[str, list[float]] = {}
    for figures in hot:
        by_name.setdefault(figures.name, []).append(figures.per_second)
    off = statistics.mean(by_name["snapshots off"])
    for name, values in by_name.items():
        mean = statistics.mean(values)
        print(f"  {name:<40} mean {mean:>8,.0f}/s   {mean / off:>6.3f}x off   (rounds: {values_line(values)})")


def values_line(values: list[float]) -> str:
    """Figures of the runs, in the order they ran."""
    return ", ".join(f"{value:,.0f}" for value in values)


if __name__ == "__main__":
    main()
