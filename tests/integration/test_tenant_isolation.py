"""Tenant isolation, tried by a machine: two merchants, every endpoint, swapped ids, keys and cursors.

Hypothesis interleaves writes and reads of two merchants (and their auditors) through
the real HTTP app and, at every step, hands one merchant the other's SKUs, order ids,
payment ids, list cursors and idempotency keys. Whatever the interleaving: another
merchant's resource is 404 (never its data, never a change to it), a list holds only
the caller's own rows, a reused idempotency key never replays another merchant's
answer, and nothing answers 5xx.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from litestar.testing import TestClient

from domain.gateway import payment_id
from tests.integration.conftest import create_merchant

pytestmark = pytest.mark.usefixtures("projections_running")

TENANTS = ("a", "b")
OTHER = {"a": "b", "b": "a"}


def _order_body(sku: str, quantity: int, currency: str = "EUR") -> dict[str, Any]:
    return {
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": {"amount": 100, "currency": currency}}],
        "currency": currency,
    }


class TwoMerchants(RuleBasedStateMachine):
    """Merchants ``a`` and ``b`` on one API; what each owns is tracked to check every answer."""

    client: TestClient[Any]
    merchants: dict[str, dict[str, Any]]

    skus = Bundle("skus")
    orders = Bundle("orders")
    cursors = Bundle("cursors")

    def __init__(self) -> None:
        super().__init__()
        self.own_skus: dict[str, set[str]] = {tenant: set() for tenant in TENANTS}
        self.own_orders: dict[str, dict[str, str]] = {tenant: {} for tenant in TENANTS}  # id -> status
        self.keys_used: dict[str, dict[str, str]] = {tenant: {} for tenant in TENANTS}  # key -> order id

    # --- helpers ---------------------------------------------------------------------------

    def call(self, tenant: str, method: str, path: str, *, role: str = "api_key", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.merchants[tenant][role]}", **kwargs.pop("headers", {})}
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        return response

    def assert_hidden(self, response: Any) -> None:
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"

    # --- writes ----------------------------------------------------------------------------

    @rule(target=skus, tenant=st.sampled_from(TENANTS), quantity=st.integers(1, 5))
    def receive(self, tenant: str, quantity: int) -> tuple[str, str]:
        sku = f"{tenant.upper()}-{uuid.uuid4().hex[:8]}"
        response = self.call(tenant, "POST", f"/v1/inventory/{sku}/receipts", json={"quantity": quantity})
        assert response.status_code == 201, response.text
        self.own_skus[tenant].add(sku)
        return tenant, sku

    @rule(target=orders, owned=skus, quantity=st.integers(1, 3), keyed=st.booleans())
    def place(self, owned: tuple[str, str], quantity: int, keyed: bool) -> tuple[str, str]:
        tenant, sku = owned
        headers = {"Idempotency-Key": f"shared-{uuid.uuid4().hex[:6]}"} if keyed else {}
        response = self.call(tenant, "POST", "/v1/orders", json=_order_body(sku, quantity), headers=headers)
        if response.status_code == 409:  # out of stock: nothing placed
            assert response.json()["code"] == "out_of_stock", response.text
            return tenant, str(uuid.uuid4())
        assert response.status_code == 201, response.text
        order = response.json()
        self.own_orders[tenant][order["id"]] = order["status"]
        if keyed:
            self.keys_used[tenant][headers["Idempotency-Key"]] = order["id"]
        return tenant, order["id"]

    # --- the other merchant, with what belongs to this one -------------------------------

    @rule(owned=orders)
    def read_anothers_order(self, owned: tuple[str, str]) -> None:
        owner, order_id = owned
        intruder = OTHER[owner]
        for role in ("api_key", "auditor_key"):
            self.assert_hidden(self.call(intruder, "GET", f"/v1/orders/{order_id}", role=role))
            self.assert_hidden(self.call(intruder, "GET", f"/v1/orders/{order_id}/events", role=role))
            at = {"as_of": "2100-01-01T00:00:00Z"}
            self.assert_hidden(self.call(intruder, "GET", f"/v1/orders/{order_id}", role=role, params=at))

    @rule(owned=orders)
    def cancel_anothers_order(self, owned: tuple[str, str]) -> None:
        owner, order_id = owned
        self.assert_hidden(self.call(OTHER[owner], "POST", f"/v1/orders/{order_id}/cancel"))
        if order_id in self.own_orders[owner]:
            mine = self.call(owner, "GET", f"/v1/orders/{order_id}", params={"as_of": "2100-01-01T00:00:00Z"})
            assert mine.status_code == 200, mine.text
            assert mine.json()["status"] == self.own_orders[owner][order_id]

    @rule(owned=orders)
    def cancel_own_order(self, owned: tuple[str, str]) -> None:
        owner, order_id = owned
        response = self.call(owner, "POST", f"/v1/orders/{order_id}/cancel")
        if order_id in self.own_orders[owner]:
            assert response.status_code == 200, response.text
            self.own_orders[owner][order_id] = "cancelled"
        else:
            self.assert_hidden(response)

    @rule(owned=skus, delta=st.integers(-3, 3).filter(bool))
    def touch_anothers_stock(self, owned: tuple[str, str], delta: int) -> None:
        owner, sku = owned
        intruder = OTHER[owner]
        if sku in self.own_skus[intruder]:  # the intruder stocked a SKU of that name: its own item
            return
        self.assert_hidden(self.call(intruder, "GET", f"/v1/inventory/{sku}"))
        self.assert_hidden(self.call(intruder, "GET", f"/v1/inventory/{sku}", role="auditor_key"))
        adjusted = self.call(intruder, "POST", f"/v1/inventory/{sku}/adjustments", json={"delta": delta, "reason": "x"})
        self.assert_hidden(adjusted)
        # The intruder may stock a SKU of the same name: it is its own item, the owner's is untouched.
        before = self.call(owner, "GET", f"/v1/inventory/{sku}", params={"as_of": "2100-01-01T00:00:00Z"}).json()
        assert self.call(intruder, "POST", f"/v1/inventory/{sku}/receipts", json={"quantity": 7}).status_code == 201
        self.own_skus[intruder].add(sku)
        after = self.call(owner, "GET", f"/v1/inventory/{sku}", params={"as_of": "2100-01-01T00:00:00Z"}).json()
        assert (after["on_hand"], after["reserved"]) == (before["on_hand"], before["reserved"])

    @rule(owned=orders, gateway_ref=st.sampled_from(["pi_1", "pi_2"]))
    def read_anothers_payment(self, owned: tuple[str, str], gateway_ref: str) -> None:
        owner, _ = owned
        other_payment = payment_id(uuid.UUID(self.merchants[owner]["merchant_id"]), "stripe", gateway_ref)
        self.assert_hidden(self.call(OTHER[owner], "GET", f"/v1/payments/{other_payment}"))

    @rule(owned=orders)
    def reuse_anothers_idempotency_key(self, owned: tuple[str, str]) -> None:
        owner, _ = owned
        if not self.keys_used[owner] or not self.own_skus[OTHER[owner]]:
            return
        key = next(iter(self.keys_used[owner]))
        intruder = OTHER[owner]
        sku = sorted(self.own_skus[intruder])[0]
        response = self.call(intruder, "POST", "/v1/orders", json=_order_body(sku, 1), headers={"Idempotency-Key": key})
        assert "idempotent-replayed" not in response.headers or response.json().get("id") not in self.own_orders[owner]
        if response.status_code == 201:
            assert response.json()["id"] != self.keys_used[owner][key]
            self.own_orders[intruder][response.json()["id"]] = response.json()["status"]

    # --- lists and cursors -------------------------------------------------------------------

    @rule(target=cursors, tenant=st.sampled_from(TENANTS), endpoint=st.sampled_from(["/v1/orders", "/v1/inventory"]))
    def first_page(self, tenant: str, endpoint: str) -> tuple[str, str, str]:
        response = self.call(tenant, "GET", endpoint, params={"limit": 1})
        assert response.status_code == 200, response.text
        self.check_page(tenant, endpoint, response.json()["data"])
        return tenant, endpoint, response.json()["next_cursor"] or ""

    @rule(cursor=cursors, swapped=st.booleans(), role=st.sampled_from(["api_key", "auditor_key"]))
    def next_page(self, cursor: tuple[str, str, str], swapped: bool, role: str) -> None:
        owner, endpoint, value = cursor
        if not value:
            return
        reader = OTHER[owner] if swapped else owner
        response = self.call(reader, "GET", endpoint, params={"limit": 100, "cursor": value}, role=role)
        assert response.status_code == 200, response.text
        self.check_page(reader, endpoint, response.json()["data"])

    def check_page(self, tenant: str, endpoint: str, rows: list[dict[str, Any]]) -> None:
        other = OTHER[tenant]
        if endpoint == "/v1/orders":
            assert not {row["id"] for row in rows} & set(self.own_orders[other])
        else:
            leaked = {row["sku"] for row in rows} & (self.own_skus[other] - self.own_skus[tenant])
            assert not leaked

    @invariant()
    def each_merchant_lists_only_its_own_orders(self) -> None:
        for tenant in TENANTS:
            response = self.call(tenant, "GET", "/v1/orders", params={"limit": 100})
            assert response.status_code == 200, response.text
            assert not {row["id"] for row in response.json()["data"]} & set(self.own_orders[OTHER[tenant]])


def test_no_merchant_ever_reads_or_changes_another_merchants_resources(client: TestClient[Any]) -> None:
    merchants = {tenant: create_merchant(client, f"Tenant {tenant}") for tenant in TENANTS}

    class Machine(TwoMerchants):
        pass

    Machine.client = client
    Machine.merchants = merchants
    # HTTP round trips through the real database vary with the machine: no per-example deadline.
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
