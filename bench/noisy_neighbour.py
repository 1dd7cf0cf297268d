"""Noisy neighbour: merchant A at 5x its rate limit, merchant B steady, two API processes.

Two real ``daybook api`` processes share PostgreSQL and Redis (one rate limit per key,
in Redis). Merchant B sends a steady, open-loop stream (receipts and level reads,
half to each process); first alone, then while merchant A sends five times its
per-minute limit to both processes. Printed: B's latency alone and beside A (the
ratio of the p99s), A's answers (429s), how many of A's requests the two processes
admitted together against the limit plus its burst, and what one rate-limit decision
costs (Redis script vs the in-process bucket).

    .venv/bin/python bench/noisy_neighbour.py [--seconds 30] [--limit 1200] [--b-rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.rate_limit import RateLimiter, SharedRateLimiter
from bench.common import Figures, api_process, bench_servers, create_merchant


@dataclass
class Stream:
    """One merchant's open-loop stream of requests."""

    name: str
    key: str
    rate_per_second: float
    figures: Figures
    statuses: Counter[int] = field(default_factory=Counter)
    admitted_by_process: Counter[str] = field(default_factory=Counter)


async def _one(session: aiohttp.ClientSession, base_url: str, stream: Stream, index: int) -> None:
    headers = {"Authorization": f"Bearer {stream.key}"}
    started = time.perf_counter()
    try:
        if index % 2 == 0:
            path = f"{base_url}/v1/inventory/{stream.name}-{index % 20}/receipts"
            request = session.post(path, json={"quantity": 1}, headers=headers)
        else:
            request = session.get(f"{base_url}/v1/inventory/{stream.name}-0", headers=headers)
        async with request as response:
            await response.read()
            status = response.status
    except aiohttp.ClientError:
        stream.figures.errors += 1
        return
    elapsed = time.perf_counter() - started
    stream.statuses[status] += 1
    if status == 429:
        stream.figures.refused += 1
    elif status < 400 or status == 404:  # 404: a level read before the first receipt
        stream.figures.succeeded += 1
        stream.figures.latencies_s.append(elapsed)
        stream.admitted_by_process[base_url] += 1
    else:
        stream.figures.errors += 1


async def run_stream(urls: list[str], stream: Stream, seconds: float, delay: float = 0.0) -> Stream:
    """Sends at a fixed rate whatever the answers (open loop), alternating the API processes."""
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.sleep(delay)
        interval = 1.0 / stream.rate_per_second
        started = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        index = 0
        while (now := time.perf_counter()) - started < seconds:
            tasks.append(asyncio.create_task(_one(session, urls[index % len(urls)], stream, index)))
            index += 1
            await asyncio.sleep(max(0.0, started + index * interval - now))
        await asyncio.gather(*tasks)
        stream.figures.seconds = time.perf_counter() - started
    return stream


def _noisy_process(urls: list[str], stream: Stream, seconds: float) -> Stream:
    """Merchant A's sender, in a process of its own so that its client work does not delay B's."""
    return asyncio.run(run_stream(urls, stream, seconds))


def phase(urls: list[str], measured: Stream, seconds: float, noisy: Stream | None, warm_up: float) -> Stream | None:
    """B's stream; and A's, from ``warm_up`` seconds before B starts until B ends."""
    if noisy is None:
        asyncio.run(run_stream(urls, measured, seconds))
        return None
    with ProcessPoolExecutor(1) as pool:
        running = pool.submit(_noisy_process, urls, noisy, warm_up + seconds)
        asyncio.run(run_stream(urls, measured, seconds, delay=warm_up))
        return running.result()


async def decision_cost(redis_url: str, count: int = 5_000, concurrency: int = 50) -> list[str]:
    """Microseconds per rate-limit decision: the Redis script and the in-process bucket."""
    shared = SharedRateLimiter(redis_url, per_minute=10**9)
    local = RateLimiter(per_minute=10**9)
    key = f"cost-{uuid.uuid4().hex}"
    lines = []
    try:
        await shared.decide(key)  # loads the script
        started = time.perf_counter()
        for _ in range(count):
            await shared.decide(key)
        sequential_us = (time.perf_counter() - started) / count * 1e6

        async def worker() -> None:
            for _ in range(count // concurrency):
                await shared.decide(key)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        concurrent_us = (time.perf_counter() - started) / count * 1e6
        started = time.perf_counter()
        for _ in range(count):
            local.decide(key)
        local_us = (time.perf_counter() - started) / count * 1e6
    finally:
        await shared.close()
    lines.append(f"    redis GCRA, one at a time      {sequential_us:8.1f} µs per decision (a round trip)")
    lines.append(f"    redis GCRA, {concurrency} at once         {concurrent_us:8.1f} µs per decision (throughput)")
    lines.append(f"    in-process bucket (fallback)   {local_us:8.1f} µs per decision")
    lines.append(f"    ratio redis/in-process, one at a time: {sequential_us / local_us:.0f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long B is measured in each phase")
    parser.add_argument("--limit", type=int, default=1200, help="requests per key per minute")
    parser.add_argument("--b-rate", type=float, default=10.0, help="merchant B's requests per second")
    arguments = parser.parse_args()
    limit, seconds = arguments.limit, arguments.seconds
    a_rate = 5 * limit / 60
    print(f"noisy neighbour, {datetime.now(UTC):%Y-%m-%d %H:%M}, limit {limit}/min per key (burst {limit})")
    print(
        f"  two API processes, B at {arguments.b_rate:g}/s: {seconds / 2:g} s alone, {seconds:g} s beside A at "
        f"{a_rate:g}/s (5x its limit; A starts early enough to spend its burst first), {seconds / 2:g} s alone"
    )
    with bench_servers() as (database_url, redis_url), contextlib.ExitStack() as stack:
        env = {"DAYBOOK_RATE_LIMIT_PER_MINUTE": str(limit)}
        urls = [stack.enter_context(api_process(database_url, redis_url, **env)) for _ in range(2)]
        merchant_a, merchant_b = create_merchant(urls[0]), create_merchant(urls[0])
        # Half of B's time alone before A, half after: a drift of the shared machine weighs on both sides.
        alone = Stream("B", merchant_b["api_key"], arguments.b_rate, Figures("(1) B alone (before and after A)"))
        phase(urls, alone, seconds / 2, None, 0.0)
        before = alone.figures.seconds
        beside = Stream("B", merchant_b["api_key"], arguments.b_rate, Figures("(2) B beside A"))
        noisy = Stream("A", merchant_a["api_key"], a_rate, Figures("(2) A at 5x its limit, all along"))
        # A's burst (a minute's allowance) is spent first: B is measured beside A held at its limit.
        warm_up = 1.2 * limit / (a_rate - limit / 60)
        noisy = phase(urls, beside, seconds, noisy, warm_up) or noisy
        phase(urls, alone, seconds / 2, None, 0.0)
        alone.figures.seconds += before
        fallbacks = sum(_process_decisions(url) for url in urls)
        cost = asyncio.run(decision_cost(redis_url))
    _report(alone, beside, noisy, limit, cost)
    print(f"decisions made per process (redis unavailable, the fallback): {fallbacks:.0f}")


def _process_decisions(base_url: str) -> float:
    """Rate-limit decisions an API process made on its own (Redis did not answer in time)."""
    text = urllib.request.urlopen(f"{base_url}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("daybook_rate_limit_decisions_total{") and 'store="process"' in line
    )


def _report(alone: Stream, beside: Stream, noisy: Stream, limit: int, cost: list[str]) -> None:
    for stream in (alone, beside, noisy):
        print(stream.figures.line(), dict(sorted(stream.statuses.items())))
    ratio = beside.figures.percentile_ms(0.99) / alone.figures.percentile_ms(0.99)
    verdict = "within 20 %" if ratio <= 1.2 else "MORE than 20 % slower"
    print(f"B's p99 beside A / alone: {ratio:.2f} ({verdict})")
    admitted = sum(noisy.admitted_by_process.values())
    bound = limit + limit * noisy.figures.seconds / 60
    per_process = ", ".join(f"{count}" for count in noisy.admitted_by_process.values())
    verdict = "OK" if admitted <= bound + 1 else "OVER"
    print(
        f"A admitted by both processes together: {admitted} ({per_process}); limit + burst over "
        f"{noisy.figures.seconds:.1f} s allows {bound:.0f}: {verdict}; A answered 429: {noisy.statuses[429]}"
    )
    print("cost of one rate-limit decision:")
    for line in cost:
        print(line)


if __name__ == "__main__":
    main()
