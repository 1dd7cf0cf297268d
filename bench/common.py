"""Shared pieces of the benchmarks: a throwaway database, a real API process, figures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adapters.database import eventsourcing_env
from adapters.migrate import migrate
from adapters.settings import Settings
from daybook.embedded import embedded_servers
from domain.application import Daybook
from domain.commands import PlaceOrder
from domain.context import CommandContext
from domain.errors import OutOfStockError
from domain.groupcommit import GroupCommitter
from domain.orders import OrderLine

BENCH_HOME = Path(".daybook/bench")
ADMIN_KEY = "dbk_admin_bench_key"


@dataclass
class Figures:
    """What one approach achieved."""

    name: str
    succeeded: int = 0
    refused: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    check: str = ""

    @property
    def per_second(self) -> float:
        """Successful operations per second."""
        return self.succeeded / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """Latency percentile in milliseconds (nearest rank)."""
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index] * 1000

    def line(self) -> str:
        """One printed line."""
        return (
            f"{self.name:<44} {self.per_second:>10,.0f}/s  p50 {self.percentile_ms(0.5):>8.1f} ms  "
            f"p99 {self.percentile_ms(0.99):>8.1f} ms  ok {self.succeeded:>7}  refused {self.refused:>6}  "
            f"errors {self.errors:>4}  {self.check}"
        )


@contextlib.contextmanager
def bench_servers() -> Iterator[tuple[str, str]]:
    """(database URL of a fresh migrated database, Redis URL); the database is dropped after."""
    with embedded_servers(
        BENCH_HOME,
        database_url=os.environ.get("DAYBOOK_DATABASE_URL") or None,
        redis_url=os.environ.get("DAYBOOK_REDIS_URL") or None,
    ) as (admin_url, redis_url):
        name = f"daybook_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        params = conninfo_to_dict(admin_url)
        params["dbname"] = name
        url = make_conninfo(**params)
        migrate(url)
        try:
            yield url, redis_url
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def api_process(database_url: str, redis_url: str, **env: str) -> Iterator[str]:
    """A real ``daybook api`` process; yields its base URL."""
    port = free_port()
    environment = {
        **os.environ,
        "DAYBOOK_DATABASE_URL": database_url,
        "DAYBOOK_REDIS_URL": redis_url,
        "DAYBOOK_ADMIN_KEY": ADMIN_KEY,
        "DAYBOOK_LOG_LEVEL": "WARNING",
        # The benchmarks measure throughput, not the per-key limit (6,000/min by default).
        "DAYBOOK_RATE_LIMIT_PER_MINUTE": "1000000000",
        **env,
    }
    process = subprocess.Popen([sys.executable, "-m", "daybook", "api", "--port", str(port)], env=environment)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daybook api did not start")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def create_merchant(base_url: str) -> dict[str, str]:
    """A merchant created through the admin endpoint."""
    response = httpx.post(
        f"{base_url}/v1/admin/merchants",
        json={"name": "Bench"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    response.raise_for_status()
    created: dict[str, str] = response.json()
    return created


def check_replayed(database_url: str, merchant_id: uuid.UUID, held_by_sku: Counter[str]) -> str:
    """Replays every ordered SKU from its events: reserved must equal the acknowledged holds."""
    app = Daybook(env=eventsourcing_env(database_url, Settings()))
    try:
        for sku, held in held_by_sku.items():
            level = app.get_inventory_level(merchant_id, sku)
            if level.reserved != held or level.reserved > level.on_hand:
                found = f"reserved {level.reserved}, acknowledged {held}, on hand {level.on_hand}"
                return f"OVERSOLD/MISMATCH {sku}: {found}"
        return f"no oversell: reserved == acknowledged holds on {len(held_by_sku)} SKU(s)"
    finally:
        app.close()


def check_replayed_total(
    database_url: str, merchant_id: uuid.UUID, skus: Iterable[str], acknowledged: int, unanswered_max: int = 0
) -> str:
    """Replays every SKU from its events: none holds more than it has, and together they
    hold the acknowledged one-unit orders, plus at most ``unanswered_max`` more: orders
    committed while their client was going away (a load generator stopping closes its
    connections with requests in flight), for loads that do not know which SKU each
    answer was for."""
    app = Daybook(env=eventsourcing_env(database_url, Settings()))
    try:
        reserved, count = 0, 0
        for sku in skus:
            level = app.get_inventory_level(merchant_id, sku)
            if level.reserved > level.on_hand:
                return f"OVERSOLD {sku}: reserved {level.reserved}, on hand {level.on_hand}"
            reserved, count = reserved + level.reserved, count + 1
        unanswered = reserved - acknowledged
        if not 0 <= unanswered <= unanswered_max:
            return f"MISMATCH: {count} SKU(s) hold {reserved} units, {acknowledged} orders acknowledged"
        return (
            f"no oversell: {count} SKU(s) hold {reserved:,} units = {acknowledged:,} acknowledged orders"
            f" + {unanswered} committed as the load stopped (at most {unanswered_max})"
        )
    finally:
        app.close()


def place_orders_in_process(
    committer: GroupCommitter,
    context: CommandContext,
    merchant_id: uuid.UUID,
    lines: tuple[OrderLine, ...],
    seconds: float,
    clients: int,
    figures: Figures,
) -> None:
    """``clients`` asyncio callers placing orders of ``lines`` through the committer for ``seconds``."""

    async def buyer(deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                await committer.submit_async(PlaceOrder(context, merchant_id, uuid.uuid4(), lines, "EUR"))
                figures.succeeded += 1
            except OutOfStockError:
                figures.refused += 1
            except Exception:
                figures.errors += 1
            figures.latencies_s.append(time.perf_counter() - started)

    async def run() -> None:
        deadline = time.monotonic() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(buyer(deadline) for _ in range(clients)))
        figures.seconds = time.perf_counter() - started

    asyncio.run(run())
