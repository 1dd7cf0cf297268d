"""``daybook audit replay``: one merchant's books against its read models, beside the whole-table comparison.

    .venv/bin/python bench/audit_replay.py [--skus 500] [--orders 500] [--merchants 4]

One fresh database on the embedded servers (or DAYBOOK_DATABASE_URL). ``--merchants``
merchants each receive ``--skus`` SKUs and place ``--orders`` orders (a third cancelled),
through the group committer; every read model and the audit chain catch up.
Then, side by side in one run, for the first merchant:

(1) replay, the merchant's aggregates found through the audit chain's index;
(2) replay with the chain's position set back to 0, so the whole log is scanned;
(3) the plain comparison (``projections.compare.differences``): every row of every
    merchant replayed and compared, all in memory.

Prints aggregates per second of each and the ratios. Figures move ±2x on a shared
machine: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import wait
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from bench.common import bench_servers
from domain.application import Daybook
from domain.commands import CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import OrderLine
from projections import compare
from projections.audit_chain import AuditChainProjection
from projections.audit_replay import replay_merchant
from projections.registry import all_projections
from projections.runner import ProjectionRunner


def _books(committer: GroupCommitter, merchant_id: uuid.UUID, skus: int, orders: int) -> None:
    """Stock of ``skus`` SKUs, then ``orders`` orders, every third cancelled, through the group committer."""
    context = CommandContext(actor="bench", request_id="bench")
    received = [committer.submit(ReceiveStock(context, merchant_id, f"SKU-{n}", 1_000_000)) for n in range(skus)]
    wait(received)
    order_ids = [uuid.uuid4() for _ in range(orders)]
    placed = [
        committer.submit(
            PlaceOrder(context, merchant_id, order_id, [OrderLine(f"SKU-{n % skus}", 1, Money(100, "EUR"))], "EUR")
        )
        for n, order_id in enumerate(order_ids)
    ]
    wait(placed)
    wait([committer.submit(CancelOrder(context, merchant_id, order_id)) for order_id in order_ids[::3]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=500)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--merchants", type=int, default=4)
    arguments = parser.parse_args()
    with bench_servers() as (database_url, _):
        settings = Settings()
        app = Daybook(env=eventsourcing_env(database_url, settings))
        merchants = [uuid.uuid4() for _ in range(arguments.merchants)]
        with GroupCommitter(app, name="bench-replay") as committer:
            for merchant_id in merchants:
                _books(committer, merchant_id, arguments.skus, arguments.orders)
        runner = ProjectionRunner(app, database_url, [])
        runner.catch_up(AuditChainProjection(app))
        for read_model in all_projections(app):
            runner.catch_up(read_model)
        aggregates = arguments.skus + arguments.orders
        figures: dict[str, float] = {}
        with psycopg.connect(database_url, autocommit=True) as conn:
            started = time.perf_counter()
            report = replay_merchant(app, conn, merchants[0])
            figures["replay, chain index"] = aggregates / (time.perf_counter() - started)
            assert report.consistent, report.differences[:3]
            assert sum(report.aggregates.values()) == aggregates, report.aggregates
            chained = conn.execute("SELECT notification_id FROM projection_tracking WHERE projection = 'audit_chain'")
            position = chained.fetchone()
            conn.execute("UPDATE projection_tracking SET notification_id = 0 WHERE projection = 'audit_chain'")
            started = time.perf_counter()
            report = replay_merchant(app, conn, merchants[0])
            figures["replay, log scanned"] = aggregates / (time.perf_counter() - started)
            assert report.consistent
            conn.execute(
                "UPDATE projection_tracking SET notification_id = %s WHERE projection = 'audit_chain'", position
            )
            started = time.perf_counter()
            for projection in all_projections(app):
                assert not compare.differences(app, conn, projection)
            # The plain comparison replays every merchant's rows: per aggregate of the table.
            figures["plain, every row in memory"] = aggregates * len(merchants) / (time.perf_counter() - started)
        app.close()
    load = os.getloadavg()[0]
    print(f"{len(merchants)} merchants of {aggregates} aggregates each; load average {load:.2f}")
    baseline = figures["plain, every row in memory"]
    for name, rate in figures.items():
        print(f"  {name:32} {rate:10,.0f} aggregates/s  ({rate / baseline:.2f}x plain)")


if __name__ == "__main__":
    main()
