"""Helpers for the audit tests: a database of one's own with a few merchants' histories, chained."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.money import Money
from domain.orders import OrderLine
from projections.audit_chain import AuditChainProjection
from projections.runner import ProjectionRunner


def some_history(app: Daybook, merchant_id: UUID, orders: int, *, request_id: str = "req-history") -> None:
    """Stock in, ``orders`` orders, every third one cancelled: a few events of several streams."""
    context = CommandContext(actor="api_key:audit-test", request_id=request_id, causation_id=f"cause-{request_id}")
    app.execute(ReceiveStock(context, merchant_id, "SKU-A", 10_000, reference="Lieferung №1"))
    for number in range(orders):
        order_id = uuid.uuid4()
        line = OrderLine("SKU-A", 1 + number % 3, Money(1_999, "EUR"))
        app.execute(PlaceOrder(context, merchant_id, order_id, [line], "EUR", customer_ref=f"Zoë-{number}"))
        if number % 3 == 0:
            app.execute(CancelOrder(context, merchant_id, order_id))


def chain_up(app: Daybook, database_url: str, **options: Any) -> int:
    """Chains every event recorded so far (in this thread); returns how many events it covered."""
    runner = ProjectionRunner(app, database_url, [], batch_size=options.pop("batch_size", 2_000))
    return runner.catch_up(AuditChainProjection(app, **options))


@contextmanager
def daybook_on(database_url: str) -> Iterator[Daybook]:
    app = Daybook(env=eventsourcing_env(database_url, Settings()))
    try:
        yield app
    finally:
        app.close()


def chain_rows(database_url: str, merchant_id: UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT position, hash, prev_hash, request_id, causation_id FROM audit_chain "
            "WHERE merchant_id = %s ORDER BY position",
            (merchant_id,),
        ).fetchall()
