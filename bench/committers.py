"""Several API processes on one hot SKU: routing to one committer per partition, side by side.

    .venv/bin/python bench/committers.py [--seconds 3] [--clients 256] [--skus 2000]

Three deployments of ``daybook api`` against one database, one after the other in one
run: (a) one process; (b) ``DAYBOOK_API_PROCESSES=2`` with routing off
(``DAYBOOK_COMMITTER_ROUTING=false``: each process commits every command itself, as
before); (c) two processes with routing on (each partition's commands reach its one
owner; the other process forwards them). Each places one-unit orders over HTTP from
``--clients`` connections, first on one hot SKU, then on ``--skus`` SKUs drawn from a
Zipf distribution, and prints orders/s, p50/p99, the 503 answers by code and the ratio
to (a). At the end every ordered SKU is replayed from its events: its ``reserved`` must
equal the orders acknowledged on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.committers.ownership import PARTITION_LOCK_NAMESPACE
from bench.common import Figures, api_process, bench_servers, create_merchant
from bench.hot_sku import ORDER_BODY, check_replayed, receive_all, zipf_picker

OWNERS = """
SELECT c.backend_pid FROM committer_partitions c
  JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.classid = %s::oid AND l.objid = c.partition::oid AND l.pid = c.backend_pid
"""
PARTITIONS = 64  # DAYBOOK_COMMITTER_PARTITIONS' default
STOCK = 1_000_000_000
HOT_SKU = "HOT-1"
DEPLOYMENTS = (
    ("(a) 1 process", {"DAYBOOK_API_PROCESSES": "1"}),
    ("(b) 2 processes, no routing", {"DAYBOOK_API_PROCESSES": "2", "DAYBOOK_COMMITTER_ROUTING": "false"}),
    ("(c) 2 processes, routed", {"DAYBOOK_API_PROCESSES": "2"}),
)


async def load(
    base_url: str, api_key: str, seconds: float, clients: int, pick_sku: object, figures: Figures
) -> tuple[Counter[str], Counter[str]]:
    """Orders from ``clients`` connections for ``seconds``; (held per SKU, 5xx codes)."""
    held: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    # One connection per client, so that the kernel spreads them over the processes.
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(base_url, headers=headers, connector=connector) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                sku = pick_sku()  # type: ignore[operator]
                started = time.perf_counter()
                async with session.post("/v1/orders", data=ORDER_BODY.replace("{sku}", sku)) as response:
                    body = await response.read()
                    status = response.status
                figures.latencies_s.append(time.perf_counter() - started)
                if status == 201:
                    figures.succeeded += 1
                    held[sku] += 1
                elif status == 409:
                    figures.refused += 1
                else:
                    figures.errors += 1
                    failures[f"{status} {_code(body)}"] += 1

        deadline = time.monotonic() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        figures.seconds = time.perf_counter() - started
    return held, failures


def _wait_for_owners(database_url: str, processes: int, routed: bool) -> str:
    """Waits (at most 20 s) until every process owns partitions; says how they are shared."""
    if not routed:
        return ""
    deadline = time.monotonic() + 20
    while True:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute(OWNERS, (PARTITION_LOCK_NAMESPACE,)).fetchall()
        shares = sorted(Counter(pid for (pid,) in rows).values(), reverse=True)
        settled = len(shares) == processes and sum(shares) == PARTITIONS and shares[0] - shares[-1] <= 1
        if settled or time.monotonic() > deadline:
            return f"partitions per process {shares}"
        time.sleep(0.2)


def _code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("code"))
    except ValueError:
        return "?"


def main() -> None:
    """Runs the three deployments, hot SKU then Zipf, and prints figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--skus", type=int, default=2000)
    args = parser.parse_args()
    skus = [f"Z-{rank:05d}" for rank in range(1, args.skus + 1)]
    results: list[tuple[Figures, Counter[str]]] = []
    load_before = os.getloadavg()
    checks: list[str] = []
    with bench_servers() as (database_url, redis_url):
        for name, env in DEPLOYMENTS:
            # Errors only: (b) logs every 503 with its traceback.
            with api_process(database_url, redis_url, DAYBOOK_LOG_LEVEL="ERROR", **env) as base_url:
                processes = int(env["DAYBOOK_API_PROCESSES"])
                owners = _wait_for_owners(database_url, processes, "DAYBOOK_COMMITTER_ROUTING" not in env)
                # A merchant of its own, stocked through this deployment: every one starts
                # with the aggregates in the caches of the processes that committed them.
                merchant = create_merchant(base_url)
                key, merchant_id = merchant["api_key"], uuid.UUID(merchant["merchant_id"])
                asyncio.run(receive_all(base_url, key, [HOT_SKU, *skus], STOCK))
                held_total: Counter[str] = Counter()
                for label, picker in (("1 SKU", lambda: HOT_SKU), (f"{args.skus} SKUs Zipf", zipf_picker(skus))):
                    figures = Figures(f"{name}, {label}")
                    figures.check = owners
                    held, failures = asyncio.run(load(base_url, key, args.seconds, args.clients, picker, figures))
                    held_total.update(held)
                    results.append((figures, failures))
            checks.append(f"{name}: {check_replayed(database_url, merchant_id, held_total)}")
    load_after = os.getloadavg()
    print(f"\ncommitters, {args.seconds:.0f} s per load, {args.clients} clients ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2 cores)")
    for figures, failures in results:
        print(figures.line(), dict(failures) or "")
    for check in checks:
        print(f"check {check}")
    print("\nratios to (a), same load:")
    for index, (figures, _) in enumerate(results):
        base = results[index % 2][0]
        ratio = figures.per_second / base.per_second if base.per_second else float("nan")
        p99 = figures.percentile_ms(0.99) / base.percentile_ms(0.99)
        print(f"  {figures.name:<44} throughput {ratio:>5.2f}x   p99 {p99:>5.2f}x")


if __name__ == "__main__":
    main()
