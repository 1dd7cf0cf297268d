"""CPU per order of the API process's own code, in-process, for one or more checkouts.

    .venv/bin/python bench/http_stack.py [--orders 20000] [--clients 256] [--rounds 3] [--checkout NAME=DIR ...]

On a shared machine the throughput of ``bench/deployment.py`` moves with the
neighbours' load; the CPU time one order costs moves much less. This bench drives the
real application (``api.app.create_app``: every middleware, the group committer, the
real PostgreSQL and Redis) through its ASGI interface, ``--clients`` concurrent
``POST /v1/orders`` of one hot SKU, with no server and no sockets, and reports per
order the CPU time of the event loop's thread (HTTP layers, handler, encoding) and of
the whole process (with the committer's thread). Each checkout runs in a child process
of its own (``PYTHONPATH``), alternately, ``--rounds`` times, against one database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "dbk_admin_bench_key"
BODY = b'{"lines":[{"sku":"HOT-1","quantity":1,"unit_price":{"amount":500,"currency":"EUR"}}],"currency":"EUR"}'


async def call(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One request through the ASGI interface; its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    forever = asyncio.get_running_loop().create_future()
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await forever
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    forever.cancel()
    return status, b"".join(chunks)


async def lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]]]:
    """Starts the application's lifespan; returns the task and the queue that stops it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup") and not started.done():
            started.set_result(message["type"])

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    if await started != "lifespan.startup.complete":
        raise RuntimeError("the application did not start")
    return task, inbox


async def measure(database_url: str, redis_url: str, orders: int, clients: int) -> dict[str, float]:
    """Places ``orders`` orders with ``clients`` concurrent callers; CPU per order."""
    from adapters.settings import Settings  # noqa: PLC0415 - from the checkout under test
    from api.app import create_app  # noqa: PLC0415

    settings = Settings(admin_key=ADMIN_KEY, rate_limit_per_minute=1_000_000_000, log_level="WARNING")
    app = create_app(settings, database_url, redis_url)
    task, inbox = await lifespan(app)
    json_type = [(b"content-type", b"application/json")]
    admin = [(b"authorization", f"Bearer {ADMIN_KEY}".encode()), *json_type]
    status, answer = await call(app, "POST", "/v1/admin/merchants", b'{"name": "Bench"}', admin)
    assert status == 201, answer
    auth = [(b"authorization", f"Bearer {json.loads(answer)['api_key']}".encode()), *json_type]
    status, answer = await call(app, "POST", "/v1/inventory/HOT-1/receipts", b'{"quantity": 1000000000}', auth)
    assert status == 201, answer
    remaining = orders
    statuses: dict[int, int] = {}

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status, _ = await call(app, "POST", "/v1/orders", BODY, auth)
            statuses[status] = statuses.get(status, 0) + 1

    for _ in range(2):  # warm up: caches, prepared statements, the first batches
        await call(app, "POST", "/v1/orders", BODY, auth)
    wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall, thread, process = time.perf_counter() - wall, time.thread_time() - thread, time.process_time() - process
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    return {
        "orders_per_second": orders / wall,
        "loop_thread_ms_per_order": 1000 * thread / orders,
        "process_ms_per_order": 1000 * process / orders,
        "created": statuses.get(201, 0),
        "load_average": os.getloadavg()[0],
    }


def child_main() -> None:
    """In the child: one measurement, printed as JSON."""
    import uvloop  # noqa: PLC0415

    database_url, redis_url, orders, clients = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    result = uvloop.run(measure(database_url, redis_url, orders, clients))
    print("HTTP_STACK " + json.dumps(result))


def main() -> None:
    """Alternates the checkouts, ``--rounds`` times; prints medians."""
    from bench.common import bench_servers  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR")
    args = parser.parse_args()
    checkouts = [("this", ROOT)] + [(n, Path(d).resolve()) for n, d in (c.split("=", 1) for c in args.checkout)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in checkouts}
    with bench_servers() as (database_url, redis_url):
        for _ in range(args.rounds):
            for name, checkout in checkouts:
                argv = [sys.executable, __file__, "--child", database_url, redis_url, str(args.orders)]
                env = {**os.environ, "PYTHONPATH": str(checkout)}
                done = subprocess.run(
                    [*argv, str(args.clients)], env=env, cwd=checkout, capture_output=True, text=True, check=False
                )
                line = next((x for x in done.stdout.splitlines() if x.startswith("HTTP_STACK ")), None)
                if line is None:
                    raise RuntimeError(f"{name} failed:\n{done.stdout}\n{done.stderr}")
                results[name].append(json.loads(line.removeprefix("HTTP_STACK ")))
                print(name, results[name][-1], flush=True)
    print(
        f"\nCPU per order in-process, {args.orders:,} orders x {args.clients} callers, median of {args.rounds} rounds"
    )
    base = None
    for name, checkout in checkouts:
        rows = results[name]
        loop = statistics.median(r["loop_thread_ms_per_order"] for r in rows)
        process = statistics.median(r["process_ms_per_order"] for r in rows)
        rate = statistics.median(r["orders_per_second"] for r in rows)
        base = base or (loop, process)
        print(
            f"  {name:<8} loop thread {loop:6.3f} ms  process {process:6.3f} ms  ({loop / base[0]:4.2f}x, "
            f"{process / base[1]:4.2f}x of {checkouts[0][0]})  {rate:7,.0f} orders/s  {checkout}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main()
    else:
        main()
