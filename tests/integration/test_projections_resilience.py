"""Read models survive their process being killed, a lost LISTEN, and a rebuild during writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from litestar.testing import TestClient

from adapters.database import READER_ROLE, eventsourcing_env
from adapters.settings import Settings
from api.app import create_app
from domain.application import Daybook
from domain.commands import CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.errors import OutOfStockError
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import OrderLine
from projections import compare
from projections.rebuild import rebuild
from projections.registry import all_projections, projection_names
from projections.state import AggregateStateProjection
from tests.integration.conftest import ADMIN_KEY, OPERATOR, create_merchant, running_projections
from tests.integration.serving import ROOT, wait_for

CONTEXT = CommandContext(actor="test:writer", request_id="writer")
SKUS = [f"SKU-{index}" for index in range(40)]
_POSITIONS = "SELECT projection, notification_id FROM projection_tracking WHERE projection = ANY(%s)"
_HEAD = "SELECT coalesce(max(notification_id), 0) FROM daybook_events"


@pytest.fixture
def daybook(own_database: str, settings: Settings) -> Iterator[Daybook]:
    app = Daybook(env=eventsourcing_env(own_database, settings))
    yield app
    app.close()


def positions(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute(_POSITIONS, (projection_names(),)).fetchall())


def head(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(_HEAD).fetchone()
    return int(row[0]) if row else 0


def advanced(database_url: str, since: dict[str, int]) -> bool:
    return any(position > since.get(name, 0) for name, position in positions(database_url).items())


def caught_up(database_url: str) -> bool:
    at, end = positions(database_url), head(database_url)
    return len(at) == len(projection_names()) and all(position == end for position in at.values())


class Writer:
    """Orders and cancels through a group committer in a thread, until ``events`` are recorded."""

    def __init__(self, daybook: Daybook, merchant_id: uuid.UUID, events: int) -> None:
        self.daybook = daybook
        self.merchant_id = merchant_id
        self.events = events
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        for sku in SKUS:
            self.daybook.execute(ReceiveStock(CONTEXT, self.merchant_id, sku, 1_000_000))
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.thread.join(timeout=300)
        if self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        try:
            with GroupCommitter(self.daybook, name="test-writer") as committer:
                while (self.daybook.recorder.max_notification_id() or 0) < self.events:
                    self._wave(committer)
        except BaseException as error:
            self.failure = error

    def _wave(self, committer: GroupCommitter) -> None:
        orders = []
        for _ in range(100):
            line = OrderLine(random.choice(SKUS), random.randint(1, 3), Money(100, "EUR"))
            command = PlaceOrder(CONTEXT, self.merchant_id, uuid.uuid4(), [line], "EUR")
            orders.append(committer.submit(command))
        cancels = []
        for future in orders:
            try:
                view = future.result(timeout=60).value
            except OutOfStockError:
                continue
            if random.random() < 0.2:
                cancels.append(committer.submit(CancelOrder(CONTEXT, self.merchant_id, view.id)))
        for future in cancels:
            future.result(timeout=60)


def assert_read_models_equal_the_events(daybook: Daybook, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for projection in all_projections(daybook):
            assert isinstance(projection, AggregateStateProjection)
            assert compare.differences(daybook, conn, projection) == [], projection.name


class ProjectionsProcess:
    """``python -m daybook projections`` on the test's database."""

    def __init__(self, database_url: str, redis_url: str, log_path: Path) -> None:
        self.env = {
            **os.environ,
            "DAYBOOK_DATABASE_URL": database_url,
            "DAYBOOK_REDIS_URL": redis_url,
            "DAYBOOK_LOG_LEVEL": "WARNING",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daybook", "projections"], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def test_killing_the_projections_process_twenty_times_during_writes_loses_and_repeats_nothing(
    daybook: Daybook, own_database: str, redis_url: str, tmp_path: Path
) -> None:
    process = ProjectionsProcess(own_database, redis_url, tmp_path / "projections.log")
    merchant_id = uuid.uuid4()
    kills_while_behind = 0
    with Writer(daybook, merchant_id, events=20_000):
        reached: dict[str, int] = {}
        for _ in range(20):
            process.start()
            # Killed once it is working again, at a random point of its batches.
            wait_for(
                lambda since=reached: caught_up(own_database) or advanced(own_database, since),
                timeout_s=60,
                what="the projections to advance after a restart",
            )
            threading.Event().wait(random.uniform(0.0, 0.2))
            kills_while_behind += not caught_up(own_database)
            process.kill()
            after_kill = positions(own_database)
            # Tracking is committed with the rows: it never goes back, so nothing is applied twice.
            assert all(after_kill[name] >= reached.get(name, 0) for name in after_kill)
            reached = after_kill
    process.start()
    try:
        wait_for(lambda: caught_up(own_database), timeout_s=120, what="the projections to reach the head")
    finally:
        process.stop()
    assert head(own_database) >= 20_000
    assert kills_while_behind >= 5, "the kills should land while events are being projected"
    assert_read_models_equal_the_events(daybook, own_database)


def test_events_are_still_projected_when_the_listen_connection_is_killed(
    daybook: Daybook, own_database: str, settings: Settings
) -> None:
    merchant_id = uuid.uuid4()
    with running_projections(own_database, settings):
        daybook.execute(ReceiveStock(CONTEXT, merchant_id, "LISTEN-1", 1))
        wait_for(lambda: caught_up(own_database), timeout_s=20, what="the first receipt projected")
        with psycopg.connect(own_database, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
            ).fetchall()
        assert killed
        assert all(row[0] for row in killed)
        daybook.execute(ReceiveStock(CONTEXT, merchant_id, "LISTEN-1", 1))
        wait_for(lambda: caught_up(own_database), timeout_s=5, what="the receipt projected by polling")
    with psycopg.connect(own_database) as conn:
        row = conn.execute("SELECT on_hand FROM inventory_levels WHERE sku = 'LISTEN-1'").fetchone()
    assert row == (2,)


def test_a_rebuild_during_writes_serves_reads_throughout_and_ends_equal_to_the_live_model(
    daybook: Daybook, own_database: str, redis_url: str, settings: Settings
) -> None:
    api_settings = replace(settings, admin_key=ADMIN_KEY, rate_limit_per_minute=1_000_000)
    with (
        running_projections(own_database, api_settings),
        TestClient(create_app(api_settings, own_database, redis_url), raise_server_exceptions=False) as client,
    ):
        merchant = create_merchant(client, "Rebuilt")
        merchant_id = uuid.UUID(merchant["merchant_id"])
        answers: list[int] = []
        stop = threading.Event()

        def read_throughout() -> None:
            while not stop.is_set():
                answers.append(client.get("/v1/orders?limit=5", headers=merchant["headers"]).status_code)
                answers.append(client.get(f"/v1/inventory/{SKUS[0]}", headers=merchant["headers"]).status_code)

        reader = threading.Thread(target=read_throughout, daemon=True)
        with Writer(daybook, merchant_id, events=12_000):
            wait_for(lambda: head(own_database) > 4_000, timeout_s=60, what="some history to rebuild")
            reader.start()
            for projection in all_projections(daybook):
                assert isinstance(projection, AggregateStateProjection)
                report = rebuild(daybook, own_database, projection, context=OPERATOR, batch_size=2_000)
                assert report.events > 0
        wait_for(lambda: caught_up(own_database), timeout_s=60, what="the projections to reach the head")
        stop.set()
        reader.join(timeout=30)
    assert answers
    assert set(answers) == {200}
    assert_read_models_equal_the_events(daybook, own_database)
    with psycopg.connect(own_database) as conn:
        names = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'orders_view'")}
        leftovers = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%%__rebuild'").fetchone()
        secured = conn.execute(
            "SELECT relrowsecurity, has_table_privilege(%s, 'orders_view', 'SELECT') FROM pg_class "
            "WHERE relname = 'orders_view'",
            (READER_ROLE,),
        ).fetchone()
        policies = conn.execute("SELECT policyname FROM pg_policies WHERE tablename = 'orders_view'").fetchall()
    assert {"orders_view_pkey", "orders_view_merchant_idx", "orders_view_due_holds_idx"} <= names
    assert leftovers == (0,)
    assert secured == (True, True)
    assert policies == [("merchant_rows",)]
