"""Row-level security: as the API's read role, a merchant's transaction sees its own rows only."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from adapters.database import READER_ROLE
from api.consistency import projected_position
from projections.registry import projection_names
from tests.integration.conftest import create_merchant
from tests.integration.serving import wait_for

pytestmark = pytest.mark.usefixtures("projections_running")

READ_MODELS = ("inventory_levels", "orders_view", "payments_view", "projection_quarantine")


def stock_and_order(client: TestClient[Any], merchant: dict[str, Any]) -> int:
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    assert (
        client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 3}, headers=merchant["headers"]).status_code
        == 201
    )
    body = {"lines": [{"sku": sku, "quantity": 1, "unit_price": {"amount": 10, "currency": "EUR"}}], "currency": "EUR"}
    placed = client.post("/v1/orders", json=body, headers=merchant["headers"])
    assert placed.status_code == 201
    return int(placed.headers["x-daybook-position"])


def test_the_read_role_is_neither_owner_nor_bypassing_row_level_security(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        role = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone()
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename = ANY(%s)", (list(READ_MODELS),)
        ).fetchall()
        secured = conn.execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relrowsecurity", (list(READ_MODELS),)
        ).fetchall()
    assert role == (False, False)
    assert (READER_ROLE,) not in owners
    assert sorted(name for (name,) in secured) == sorted(READ_MODELS)


def test_raw_sql_as_the_read_role_with_merchant_a_set_returns_no_row_of_merchant_b(
    client: TestClient[Any], database_url: str
) -> None:
    first, second = create_merchant(client, "RLS A"), create_merchant(client, "RLS B")
    position = max(stock_and_order(client, first), stock_and_order(client, second))
    wait_for(
        lambda: projected_position(client.app.state.pool, projection_names()) >= position,  # type: ignore[attr-defined]
        timeout_s=20,
        what="both merchants projected",
    )
    a, b = uuid.UUID(first["merchant_id"]), uuid.UUID(second["merchant_id"])
    with psycopg.connect(database_url, options=f"-c role={READER_ROLE}") as conn:
        for table in ("inventory_levels", "orders_view"):
            with conn.transaction():
                conn.execute("SELECT set_config('daybook.merchant_id', %s, true)", (str(a),))
                seen = {row[0] for row in conn.execute(f"SELECT merchant_id FROM {table}")}
            assert seen == {a}, table
            with conn.transaction():
                unscoped = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert unscoped == (0,), f"{table} without a merchant set"
        with conn.transaction():
            conn.execute("SELECT set_config('daybook.merchant_id', %s, true)", (str(b),))
            assert conn.execute("SELECT count(*) FROM orders_view WHERE merchant_id = %s", (a,)).fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("DELETE FROM orders_view")
