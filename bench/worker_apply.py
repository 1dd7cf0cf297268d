"""The workers' group committer applying gateway facts, in-process: CPU and wall time per fact.

    .venv/bin/python bench/worker_apply.py [--orders 3000] [--rounds 2]
    cd /tmp/other-checkout && /work/main/.venv/bin/python /work/main/bench/worker_apply.py

What a ``daybook worker`` process does for webhook rows, without HTTP, Redis or the
inbox: ``--orders`` orders are placed (by another application, so none is in the
committer's cache, as in the workers), then an authorization and a capture per order
are submitted to a committer with the workers' batch size, by 32 threads 40 facts at a
time (a worker thread's message of rows). Printed per round: facts applied per second
and the process's CPU and wall time per fact, nearly all the committer thread's. Run
from another checkout's directory, it measures that checkout's code (it imports from
the current directory), so two checkouts can be compared one after the other.

Every round checks that each order ended paid and its stock committed.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.getcwd())  # the checkout being measured

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from bench.common import bench_servers
from domain.application import Daybook
from domain.commands import ApplyGatewayEvent, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import OrderLine, OrderStatus

CONTEXT = CommandContext(actor="bench", request_id="bench-worker-apply")
THREADS = 32
ROWS_PER_MESSAGE = 40
# Older checkouts have no ``views`` field: they always build the views.
WITHOUT_VIEWS = {"views": False} if "views" in inspect.signature(ApplyGatewayEvent).parameters else {}


def one_round(database_url: str, settings: Settings, orders_count: int) -> str:
    """Places the orders, applies two facts each, checks them; returns the printed line."""
    placing = Daybook(env=eventsourcing_env(database_url, settings))
    merchant_id = uuid.uuid4()
    placing.execute(ReceiveStock(CONTEXT, merchant_id, "SKU-1", orders_count))
    orders = [uuid.uuid4() for _ in range(orders_count)]
    line = (OrderLine("SKU-1", 1, Money(100, "EUR")),)
    with GroupCommitter(placing, name="bench-placer") as placer:
        for future in [placer.submit(PlaceOrder(CONTEXT, merchant_id, order, line, "EUR")) for order in orders]:
            future.result(60)
    placing.close()

    facts = [
        GatewayEvent(kind, "standard", f"pay_{n}", f"evt_{n}_{kind}", order, 100, "EUR")
        for n, order in enumerate(orders)
        for kind in (GatewayEventKind.AUTHORIZED, GatewayEventKind.CAPTURED)
    ]
    messages = [facts[start : start + ROWS_PER_MESSAGE] for start in range(0, len(facts), ROWS_PER_MESSAGE)]
    lock = threading.Lock()
    app = Daybook(env=eventsourcing_env(database_url, settings))
    committer = GroupCommitter(app, batch_size_max=settings.worker_batch_size_max, name="bench-worker")
    committer.start()

    def worker_thread() -> None:
        while True:
            with lock:
                if not messages:
                    return
                message = messages.pop()
            submitted = [
                committer.submit(ApplyGatewayEvent(CONTEXT, merchant_id, fact, **WITHOUT_VIEWS)) for fact in message
            ]
            for future in submitted:
                future.result(120)

    threads = [threading.Thread(target=worker_thread) for _ in range(THREADS)]
    cpu_started, started = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu_s, wall_s = time.process_time() - cpu_started, time.perf_counter() - started
    committer.stop()
    unpaid = sum(app.get_order(merchant_id, order).status is not OrderStatus.PAID for order in orders)
    level = app.get_inventory_level(merchant_id, "SKU-1")
    app.close()
    check = "every order paid, its stock committed"
    if unpaid or level.reserved or level.on_hand != 0:
        check = f"MISMATCH: {unpaid} orders unpaid, level {level}"
    return (
        f"{len(facts):,} facts in {wall_s:.2f} s = {len(facts) / wall_s:,.0f}/s; "
        f"CPU {cpu_s * 1000 / len(facts):.3f} ms/fact, wall {wall_s * 1000 / len(facts):.3f} ms/fact; {check}"
    )


def main() -> None:
    """Runs the rounds and prints them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    settings = Settings()
    print(f"workers' committer in-process, code of {os.getcwd()}, {args.orders:,} orders a round")
    with bench_servers() as (database_url, _):
        for n in range(args.rounds):
            print(f"round {n + 1}: " + one_round(database_url, settings, args.orders), flush=True)


if __name__ == "__main__":
    main()
