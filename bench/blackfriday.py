"""Black Friday: the whole deployment under load and faults, then every invariant checked.

    .venv/bin/python bench/blackfriday.py [--duration 240] [--shoppers 24] [--merchants 3] [--seed 1] [--short]

Starts, under a temporary directory, a PostgreSQL and a Redis of its own (so it can
restart them), a TCP proxy in front of PostgreSQL (so it can drop every connection), and
the real deployment as separate processes: ``daybook api`` with two uvicorn processes,
``daybook worker`` and ``daybook projections``, restarted by a supervisor when they die.
Then, for ``--duration`` seconds, on loopback only:

- merchants restock their SKUs (two hot ones each, restocked a little at a time so they
  sell out; a hundred cold ones) with keyed receipts, and write some stock off;
- shoppers place orders (one or two lines, half of them on hot SKUs), cancel a quarter,
  read some back at the position their answer named; every command has an
  ``Idempotency-Key`` and is re-sent with it until answered;
- a gateway simulator pays almost half the orders with signed webhooks, Stripe and
  Standard Webhooks, four events a payment (authorizations, captures, refunds, disputes,
  a refund redelivered under a new event id), delayed, a third reordered, a quarter sent
  twice, each re-sent until answered 200;
- a fault injector (``bench/bf_faults.py``) kills API processes, the whole API, the
  worker and the projection runner with ``kill -9``, restarts Redis twice and flushes it
  once, restarts PostgreSQL once (immediate stop) and drops every database connection.

Then it lets the deployment drain (inbox processed, projections at the head) and runs
the checks of ``bench/bf_checks.py``, printing them as a table with the throughput and
latency per endpoint, the largest projection lag and the faults. Exit code 1 on any
violation. ``--short`` is the test suite's version: one fault of each kind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import eventsourcing_env
from adapters.migrate import migrate
from adapters.settings import Settings
from bench import bf_checks, bf_feeds
from bench.bf_faults import FaultInjector, Injected
from bench.bf_load import COLD_SKUS_PER_MERCHANT, HOT_SKUS_PER_MERCHANT, Evidence, Merchant, Traffic
from bench.bf_servers import Part, Postgres, Proxy, Redis, Supervisor, api_ready, free_port, wait_until
from daybook.embedded import ensure_database
from domain.application import Daybook
from projections.registry import every_projection_name

ADMIN_KEY = "dbk_admin_black_friday_key"
DRAIN_TIMEOUT_S = 240.0
HOT_STOCK, COLD_STOCK = 100, 10
GATEWAY_SENDERS = 12
SSE_CLIENTS_PER_MERCHANT = 2


@dataclass(frozen=True)
class Config:
    """One run's shape."""

    duration_s: float = 240.0
    shoppers: int = 24
    merchants: int = 3
    seed: int = 1
    short: bool = False
    keep: bool = False


@dataclass
class LagSampler:
    """Samples the head of the log and every projection's position twice a second (a thread)."""

    database_url: str
    largest: int = 0
    largest_at_s: float = 0.0
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        began = time.monotonic()
        names = every_projection_name()
        while not self._stop.wait(0.5):
            try:
                with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                    head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM daybook_events").fetchone()
                    rows = conn.execute(
                        "SELECT projection, notification_id FROM projection_tracking WHERE projection = ANY(%s)",
                        (names,),
                    ).fetchall()
            except psycopg.Error:
                continue  # PostgreSQL is restarting
            assert head is not None
            positions = dict(rows)
            lag = max(int(head[0]) - int(positions.get(name, 0)) for name in names)
            self.samples.append(lag)
            if lag > self.largest:
                self.largest, self.largest_at_s = lag, time.monotonic() - began

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Report:
    """Everything a run printed, for the caller (the test asserts on it)."""

    results: list[bf_checks.Result]
    faults: dict[str, int]
    injected: list[Injected]
    fault_errors: list[str]
    evidence: Evidence
    load_s: float
    lag: LagSampler
    restarts: dict[str, int]
    drained: str
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]

    @property
    def violations(self) -> list[bf_checks.Result]:
        return [result for result in self.results if result.ok is False]


def _environment(database_url: str, redis_url: str, directory: Path) -> dict[str, str]:
    metrics = directory / "metrics"
    metrics.mkdir(exist_ok=True)
    return {
        **os.environ,
        "DAYBOOK_DATABASE_URL": database_url,
        "DAYBOOK_REDIS_URL": redis_url,
        "DAYBOOK_ADMIN_KEY": ADMIN_KEY,
        "DAYBOOK_HOME": str(directory / "home"),  # the audit signing key, among others
        "DAYBOOK_LOG_LEVEL": "WARNING",
        "DAYBOOK_API_PROCESSES": "2",
        # The load is many shoppers behind one key each merchant: the per-key limit is not the subject.
        "DAYBOOK_RATE_LIMIT_PER_MINUTE": "100000000",
        "DAYBOOK_WEBHOOK_RATE_LIMIT_PER_MINUTE": "100000000",
        # A run killed mid-request leaves its key locked this long (default 60 s): retries take over sooner.
        "DAYBOOK_IDEMPOTENCY_LOCK_SECONDS": "3",
        "DAYBOOK_INBOX_SWEEP_INTERVAL_SECONDS": "5",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


def run(config: Config, out: Callable[[str], None] = print) -> Report:
    """One whole run: servers, deployment, load and faults, drain, checks; everything stopped after."""
    directory = Path(tempfile.mkdtemp(prefix="daybook-blackfriday-"))
    out(f"Black Friday: working directory {directory}")
    postgres, redis_server = Postgres(directory), Redis(directory)
    proxy = Proxy(postgres.port, directory / "proxy.log")
    supervisor: Supervisor | None = None
    try:
        postgres.start()
        ensure_database(postgres.url(), "daybook")
        direct_url = postgres.url("daybook")
        migrate(direct_url)
        redis_server.start()
        proxy.start()
        env = _environment(postgres.url("daybook", proxy.port), redis_server.url, directory)
        api_port = free_port()
        python = sys.executable
        api = Part("api", [python, "-m", "daybook", "api", "--port", str(api_port)], directory / "api.log",
                   ready=api_ready(api_port))  # fmt: skip
        worker = Part("worker", [python, "-m", "daybook", "worker"], directory / "worker.log")
        projections = Part("projections", [python, "-m", "daybook", "projections"], directory / "projections.log")
        supervisor = Supervisor([api, worker, projections], env)
        supervisor.start()
        out(f"deployment up: api :{api_port} (2 processes), worker, projections; PostgreSQL :{postgres.port} "
            f"behind proxy :{proxy.port}; Redis :{redis_server.port}")  # fmt: skip
        injector = FaultInjector(
            api, worker, projections, postgres, redis_server, proxy, api_ready(api_port),
            FaultInjector.plan(config.duration_s, config.seed, short=config.short),
        )  # fmt: skip
        lag = LagSampler(direct_url)
        evidence = Evidence()
        loadavg_before = os.getloadavg()
        deployment = Deployment(f"http://127.0.0.1:{api_port}", direct_url, env, directory, supervisor, worker)
        load_s, drained, extras = asyncio.run(_drive(config, deployment, evidence, injector, lag, out))
        out(f"drained: {drained}")
        results = _check(evidence, direct_url, extras)
        return Report(
            results, injector.counts(), injector.injected, injector.errors, evidence, load_s, lag,
            dict(supervisor.restarts), drained, loadavg_before, os.getloadavg(),
        )  # fmt: skip
    finally:
        if supervisor is not None:
            supervisor.stop()
        proxy.stop()
        redis_server.stop()
        postgres.stop()
        if not config.keep:
            shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Deployment:
    """Where the running deployment is, for the drive."""

    base_url: str
    database_url: str
    env: dict[str, str]
    directory: Path
    supervisor: Supervisor
    worker: Part


async def _drive(
    config: Config, deployment: Deployment, evidence: Evidence, injector: FaultInjector, lag: LagSampler, out: Any
) -> tuple[float, str, dict[str, Any]]:
    """Merchants and stock, the load with the faults, the drain; returns (load seconds, drain, extra checks)."""
    traffic = Traffic(deployment.base_url, evidence, config.seed)
    try:
        await _open_shops(config, traffic, evidence)
        readers = await _readers(traffic, evidence, deployment)
        out(f"load: {config.duration_s:.0f} s, {config.shoppers} shoppers, {config.merchants} merchants, "
            f"{len(injector.schedule)} faults scheduled; readers: {readers.describe()}")  # fmt: skip
        evidence.endpoints.clear()  # the figures are the load's, not the shops' opening stock
        began = time.monotonic()
        sampler = threading.Thread(target=lag.run, name="lag", daemon=True)
        sampler.start()
        injector.start()
        rng = random.Random(config.seed)
        clients = [asyncio.create_task(traffic.shopper(random.Random(rng.random()))) for _ in range(config.shoppers)]
        clients += [asyncio.create_task(traffic.merchant(m, random.Random(rng.random()))) for m in evidence.merchants]
        senders = [asyncio.create_task(traffic.gateway_sender()) for _ in range(GATEWAY_SENDERS)]
        readers.start(traffic)
        await asyncio.sleep(config.duration_s)
        traffic.stopping.set()
        await asyncio.gather(*clients)
        traffic.shoppers_done.set()
        await asyncio.gather(*senders)
        load_s = time.monotonic() - began
        await asyncio.to_thread(injector.stop)
        lag.stop()
        # Quiet before the checks: once the inbox is drained the worker stops (nothing else
        # writes events: no expiry sweep lands between two reads of the checks), then the
        # projections reach the head and the readers catch up with it.
        drained = await asyncio.to_thread(_drain, deployment.database_url, inbox=True)
        await asyncio.to_thread(deployment.supervisor.retire, deployment.worker)
        drained += "; " + await asyncio.to_thread(_drain, deployment.database_url, inbox=False)
        extras = await readers.finish()
        return load_s, drained, extras
    finally:
        await traffic.close()


async def _open_shops(config: Config, traffic: Traffic, evidence: Evidence) -> None:
    """The merchants, each with its SKUs stocked."""
    for index in range(config.merchants):
        response = await traffic.http.post("/v1/admin/merchants", json={"name": f"Shop {index}"},
                                           headers={"Authorization": f"Bearer {ADMIN_KEY}"})  # fmt: skip
        response.raise_for_status()
        evidence.merchants.append(Merchant(
            response.json(),
            [f"HOT-{n}" for n in range(HOT_SKUS_PER_MERCHANT)],
            [f"COLD-{n:03d}" for n in range(COLD_SKUS_PER_MERCHANT)],
        ))  # fmt: skip
    await asyncio.gather(*(
        traffic.stock(merchant, sku, HOT_STOCK if sku.startswith("HOT") else COLD_STOCK)
        for merchant in evidence.merchants for sku in merchant.hot_skus + merchant.cold_skus
    ))  # fmt: skip


@dataclass
class Readers:
    """The SSE clients and the auditor, when the build has their routes."""

    deployment: Deployment
    merchants: list[Merchant]
    sse: list[bf_feeds.SseClient] | None
    auditor: bf_feeds.Auditor | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def describe(self) -> str:
        sse = f"{len(self.sse)} SSE clients" if self.sse is not None else "no live feed in this build"
        return f"{sse}, {'an auditor' if self.auditor is not None else 'no audit chain in this build'}"

    def start(self, traffic: Traffic) -> None:
        for client in self.sse or []:
            self.tasks.append(asyncio.create_task(client.follow(traffic, self.stop)))
        if self.auditor is not None:
            self.tasks.append(asyncio.create_task(self.auditor.run(traffic, traffic.stopping)))

    async def finish(self) -> dict[str, Any]:
        """Lets the SSE clients catch up with the head, stops every reader; the checks they feed."""
        extras: dict[str, Any] = {}
        if self.sse is not None:
            positions = bf_feeds.merchant_positions
            database_url = self.deployment.database_url
            expected = {m.merchant_id: await asyncio.to_thread(positions, database_url, m) for m in self.merchants}
            for client in self.sse:
                client.target = (expected[client.merchant.merchant_id] or [0])[-1]
            extras["sse_check"] = bf_feeds.sse_check(self.sse, expected)
        self.stop.set()
        await asyncio.gather(*self.tasks)
        if self.auditor is not None:
            env = {**self.deployment.env, "DAYBOOK_DATABASE_URL": self.deployment.database_url}
            extras["audit_check"] = bf_feeds.audit_check(
                self.auditor, self.deployment.base_url, env, self.deployment.directory
            )
        return extras


async def _readers(traffic: Traffic, evidence: Evidence, deployment: Deployment) -> Readers:
    """SSE clients (two a merchant) and an auditor, each only if the API serves its routes."""
    has_feed = await bf_feeds.route_exists(traffic.http, bf_feeds.STREAM_PATH, {})
    has_audit = await bf_feeds.route_exists(traffic.http, bf_feeds.VERIFY_PATH, {})
    clients = [bf_feeds.SseClient(m) for m in evidence.merchants for _ in range(SSE_CLIENTS_PER_MERCHANT)]
    return Readers(
        deployment,
        evidence.merchants,
        clients if has_feed else None,
        bf_feeds.Auditor(evidence.merchants) if has_audit else None,
    )


_PENDING = "SELECT count(*) FROM webhook_inbox WHERE state = 'pending'"


def _drain(database_url: str, *, inbox: bool) -> str:
    """Waits until no webhook is pending (``inbox``) or every projection is at the head of the log."""
    names = every_projection_name()

    def settled() -> bool:
        try:
            with psycopg.connect(database_url) as conn:
                pending = conn.execute(_PENDING).fetchone()
                head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM daybook_events").fetchone()
                rows = dict(conn.execute("SELECT projection, notification_id FROM projection_tracking").fetchall())
        except psycopg.Error:
            return False
        assert pending is not None
        assert head is not None
        if inbox:
            return bool(pending[0] == 0)
        return all(rows.get(name, 0) >= head[0] for name in names)

    what = "the webhook inbox to drain" if inbox else "the projections to reach the head"
    began = time.monotonic()
    try:
        wait_until(settled, DRAIN_TIMEOUT_S, what)
    except RuntimeError as error:
        return str(error)
    done = "inbox drained" if inbox else "projections at the head"
    return f"{done} {time.monotonic() - began:.1f} s later"


def _check(evidence: Evidence, database_url: str, extras: dict[str, Any]) -> list[bf_checks.Result]:
    app = Daybook(env=eventsourcing_env(database_url, Settings()))
    try:
        return bf_checks.run_checks(bf_checks.Run(evidence, database_url, app, extras))
    finally:
        app.close()


# --- the report -----------------------------------------------------------------------------


def render(report: Report, config: Config) -> str:
    """The report as Markdown tables."""
    mark = {True: "ok", False: "**VIOLATED**", None: "not checked"}
    before, after = report.loadavg_before, report.loadavg_after
    lines = [
        f"Black Friday, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
        f"{before[0]:.2f} {before[1]:.2f} {before[2]:.2f} before, {after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after",
        f"load {report.load_s:.0f} s ({config.duration_s:.0f} s of new traffic), {config.shoppers} shoppers, "
        f"{config.merchants} merchants x ({HOT_SKUS_PER_MERCHANT} hot + {COLD_SKUS_PER_MERCHANT} cold SKUs), "
        f"seed {config.seed}; {report.drained}",
        "",
        "| invariant | result | detail |",
        "|---|---|---|",
    ]
    for result in report.results:
        lines.append(f"| {result.name} | {mark[result.ok]} | {result.detail} |")
        lines.extend(f"|  |  | {example} |" for example in result.examples)
    lines += ["", "| endpoint | answers | 2xx/s | p50 ms | p99 ms | statuses | no answer |", "|" + "---|" * 7]
    for label, endpoint in sorted(report.evidence.endpoints.items()):
        ok = sum(n for status, n in endpoint.statuses.items() if 200 <= status < 300)
        statuses = " ".join(f"{status}:{n}" for status, n in sorted(endpoint.statuses.items()))
        lines.append(
            f"| {label} | {sum(endpoint.statuses.values())} | {ok / report.load_s:,.1f} | "
            f"{endpoint.percentile_ms(0.5):.1f} | {endpoint.percentile_ms(0.99):.1f} | {statuses} | "
            f"{endpoint.no_answer} |"
        )
    evidence = report.evidence
    samples = sorted(report.lag.samples) or [0]
    lines += [
        "",
        f"orders acknowledged {len(evidence.orders)}, out of stock {evidence.out_of_stock}, never answered "
        f"{len(evidence.unresolved_orders)}; payments {len(evidence.stories)}; stock requests {len(evidence.stock)}",
        f"projection lag: largest {report.lag.largest} events ({report.lag.largest_at_s:.0f} s into the load), "
        f"p99 of {len(report.lag.samples)} samples {samples[int(0.99 * (len(samples) - 1))]} events",
        f"restarts by the supervisor: {report.restarts}",
        "",
        "| fault | injected | recovered in (s) |",
        "|---|---|---|",
    ]
    for kind, count in report.faults.items():
        times = [f"{f.recovered_s:.1f}" for f in report.injected if f.kind == kind and f.recovered_s is not None]
        lines.append(f"| {kind} | {count} | {' '.join(times) or '-'} |")
    lines.extend(f"fault error: {error}" for error in report.fault_errors)
    verdict = "no invariant violated" if not report.violations else f"{len(report.violations)} invariant(s) VIOLATED"
    lines += ["", verdict]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of new traffic (default 240)")
    parser.add_argument("--shoppers", type=int, default=24)
    parser.add_argument("--merchants", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true", help="one fault of each kind (the test suite's version)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, data)")
    args = parser.parse_args()
    config = Config(args.duration, args.shoppers, args.merchants, args.seed, args.short, args.keep)
    report = run(config)
    print(render(report, config))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
