"""Hot-SKU holds: five approaches side by side, one run, one database.

    .venv/bin/python bench/hot_sku.py [--seconds 6] [--threads 32] [--clients 256]

(1) naive event sourcing per request: load the SKU aggregate, append, save, retry on a
    version conflict; (2) a SQL row lock per request (SELECT … FOR UPDATE + UPDATE);
(3) Daybook's group committer in-process; (4) Daybook over HTTP against a real
``daybook api`` process with 256 concurrent clients on one SKU; (5) the same with
10,000 SKUs drawn from a Zipf distribution. Prints throughput and p50/p99 latency per
approach, the ratios, and an oversell check replayed from the events.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import psycopg
from eventsourcing.persistence import IntegrityError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import eventsourcing_env
from adapters.runtime import tune_gc
from adapters.settings import Settings
from bench.common import Figures, api_process, bench_servers, check_replayed, create_merchant, place_orders_in_process
from domain.application import Daybook
from domain.commands import PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import OrderLine

STOCK = 1_000_000_000
CONTEXT = CommandContext(actor="bench", request_id="bench")
LINE = (OrderLine("HOT-1", 1, Money(500, "EUR")),)
ORDER_BODY = '{"lines":[{"sku":"{sku}","quantity":1,"unit_price":{"amount":500,"currency":"EUR"}}],"currency":"EUR"}'


def naive(database_url: str, seconds: float, threads: int) -> Figures:
    """(1) one transaction per request, retrying version conflicts."""
    figures = Figures("(1) naive event-sourced, per request")
    app = Daybook(env=eventsourcing_env(database_url, Settings(), pool_size=threads))
    merchant_id = uuid.uuid4()
    app.execute(ReceiveStock(CONTEXT, merchant_id, "HOT-1", STOCK))
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def buyer() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            for _ in range(1_000):
                try:
                    app.execute(PlaceOrder(CONTEXT, merchant_id, uuid.uuid4(), LINE, "EUR"))
                except IntegrityError:
                    continue
                with lock:
                    figures.succeeded += 1
                    figures.latencies_s.append(time.perf_counter() - started)
                break
            else:
                with lock:
                    figures.errors += 1

    run_threads(buyer, threads, figures)
    app.close()
    figures.check = check_replayed(database_url, merchant_id, Counter({"HOT-1": figures.succeeded}))
    return figures


def row_lock(database_url: str, seconds: float, threads: int) -> Figures:
    """(2) SELECT … FOR UPDATE + UPDATE per request (a classic mutable stock table)."""
    figures = Figures("(2) SQL row lock, per request")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_stock (sku text PRIMARY KEY, on_hand bigint NOT NULL, reserved bigint NOT NULL);"
            "CREATE TABLE bench_holds (order_id uuid PRIMARY KEY, sku text NOT NULL, quantity int NOT NULL)"
        )
        conn.execute("INSERT INTO bench_stock VALUES ('HOT-1', %s, 0)", (STOCK,))
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def buyer() -> None:
        with psycopg.connect(database_url) as conn:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                with conn.transaction():
                    row = conn.execute(
                        "SELECT on_hand - reserved FROM bench_stock WHERE sku = 'HOT-1' FOR UPDATE"
                    ).fetchone()
                    held = row is not None and row[0] >= 1
                    if held:
                        conn.execute("UPDATE bench_stock SET reserved = reserved + 1 WHERE sku = 'HOT-1'")
                        conn.execute("INSERT INTO bench_holds VALUES (%s, 'HOT-1', 1)", (uuid.uuid4(),))
                with lock:
                    figures.succeeded += held
                    figures.refused += not held
                    figures.latencies_s.append(time.perf_counter() - started)

    run_threads(buyer, threads, figures)
    with psycopg.connect(database_url) as conn:
        reserved, on_hand = conn.execute("SELECT reserved, on_hand FROM bench_stock").fetchone() or (0, 0)
    ok = reserved == figures.succeeded and reserved <= on_hand
    figures.check = "no oversell" if ok else f"MISMATCH reserved {reserved} vs {figures.succeeded}"
    return figures


def run_threads(target: object, count: int, figures: Figures) -> None:
    """Runs ``count`` threads of ``target`` and records the wall time."""
    workers = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    figures.seconds = time.perf_counter() - started


def batcher(database_url: str, seconds: float, clients: int) -> Figures:
    """(3) the group committer in-process, ``clients`` concurrent asyncio callers."""
    figures = Figures(f"(3) Daybook group commit, in-process ({clients})")
    settings = Settings()
    app = Daybook(env=eventsourcing_env(database_url, settings))
    merchant_id = uuid.uuid4()
    app.execute(ReceiveStock(CONTEXT, merchant_id, "HOT-1", STOCK))
    committer = GroupCommitter(app, batch_size_max=settings.batch_size_max, batch_wait_ms=settings.batch_wait_ms)
    committer.start()
    tune_gc()  # as `daybook api` does at start-up

    place_orders_in_process(committer, CONTEXT, merchant_id, LINE, seconds, clients, figures)
    committer.stop()
    app.close()
    figures.check = check_replayed(database_url, merchant_id, Counter({"HOT-1": figures.succeeded}))
    return figures


async def http_load(
    base_url: str, api_key: str, seconds: float, clients: int, pick_sku: object, figures: Figures
) -> Counter[str]:
    """``clients`` concurrent connections placing one-unit orders until the time is up."""
    held: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url, headers=headers, connector=connector) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                sku = pick_sku()  # type: ignore[operator]
                body = ORDER_BODY.replace("{sku}", sku)
                started = time.perf_counter()
                async with session.post("/v1/orders", data=body) as response:
                    await response.read()
                    status = response.status
                figures.latencies_s.append(time.perf_counter() - started)
                if status == 201:
                    figures.succeeded += 1
                    held[sku] += 1
                elif status == 409:
                    figures.refused += 1
                else:
                    figures.errors += 1

        deadline = time.monotonic() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        figures.seconds = time.perf_counter() - started
    return held


async def receive_all(base_url: str, api_key: str, skus: list[str], quantity: int) -> None:
    """Stocks every SKU over HTTP, 64 at a time."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(base_url, headers=headers, connector=aiohttp.TCPConnector(limit=64)) as session:
        semaphore = asyncio.Semaphore(64)

        async def receive(sku: str) -> None:
            async with semaphore, session.post(f"/v1/inventory/{sku}/receipts", json={"quantity": quantity}) as r:
                r.raise_for_status()

        await asyncio.gather(*(receive(sku) for sku in skus))


def zipf_picker(skus: list[str], exponent: float = 1.1) -> object:
    """A function drawing SKUs with Zipf weights 1/rank^exponent."""
    cumulative = list(itertools.accumulate(1 / rank**exponent for rank in range(1, len(skus) + 1)))
    total = cumulative[-1]
    generator = random.Random(7)
    return lambda: skus[bisect.bisect_left(cumulative, generator.random() * total)]


def over_http(database_url: str, redis_url: str, seconds: float, clients: int) -> tuple[Figures, Figures]:
    """(4) one hot SKU and (5) 10,000 Zipf-distributed SKUs, against a real ``daybook api``."""
    hot = Figures(f"(4) Daybook over HTTP, 1 SKU ({clients} clients)")
    zipf = Figures(f"(5) Daybook over HTTP, 10k SKUs Zipf ({clients})")
    with api_process(database_url, redis_url) as base_url:
        merchant = create_merchant(base_url)
        key, merchant_id = merchant["api_key"], uuid.UUID(merchant["merchant_id"])
        asyncio.run(receive_all(base_url, key, ["HOT-1"], STOCK))
        held = asyncio.run(http_load(base_url, key, seconds, clients, lambda: "HOT-1", hot))
        hot.check = check_replayed(database_url, merchant_id, held)
        skus = [f"Z-{rank:05d}" for rank in range(1, 10_001)]
        asyncio.run(receive_all(base_url, key, skus, 1_000_000))
        held = asyncio.run(http_load(base_url, key, seconds, clients, zipf_picker(skus), zipf))
        zipf.check = check_replayed(database_url, merchant_id, held)
    return hot, zipf


def main() -> None:
    """Runs every approach and prints the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=32, help="concurrent buyers for (1) and (2)")
    parser.add_argument("--clients", type=int, default=256, help="concurrent callers for (3)-(5)")
    args = parser.parse_args()
    with bench_servers() as (database_url, redis_url):
        results = [
            naive(database_url, args.seconds, args.threads),
            row_lock(database_url, args.seconds, args.threads),
            batcher(database_url, args.seconds, args.clients),
            *over_http(database_url, redis_url, args.seconds, args.clients),
        ]
    print(f"\nhot SKU holds, {args.seconds:.0f} s each ({time.strftime('%Y-%m-%d %H:%M')})")
    for figures in results:
        print(figures.line())
    base, row = results[0].per_second, results[1].per_second
    print("\nratios:")
    for figures in results[1:]:
        ratio_naive, ratio_row = figures.per_second / base, figures.per_second / row
        print(f"  {figures.name:<44} {ratio_naive:>8.1f}x naive   {ratio_row:>6.1f}x row lock")


if __name__ == "__main__":
    main()
