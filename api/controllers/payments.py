"""``/v1/payments`` (read-only; payments are created by webhooks) and ``/v1/reconciliation``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromPath

from api import read_store
from api.auth import merchant_or_auditor
from api.commands import merchant_of
from api.pagination import decode_issue_cursor, decode_time_id_cursor, issue_cursor, time_id_cursor
from api.queries import limit_of, query_value, uuid_of
from api.read_store import IssueRow
from api.reads import Quarantined, read_one, read_page
from api.schemas import IssuePage, IssueRead, PaymentPage, PaymentRead
from domain.application import Daybook
from domain.orders import Order
from domain.payments import Payment
from projections.orders import OrdersProjection
from projections.payments import PaymentsProjection

PAYMENT_PROJECTIONS = ("payments",)
ISSUE_PROJECTIONS = ("payments", "orders")


class PaymentsController(Controller):
    """Payments of the caller's merchant."""

    path = "/v1/payments"
    tags = ["payments"]
    # Guards sit on the handlers: the route's OPTIONS handler answers without authentication.

    @get("/{payment_id:uuid}", operation_id="getPayment", opt=merchant_or_auditor)
    async def get_one(self, request: Request[Any, Any, Any], payment_id: FromPath[uuid.UUID]) -> PaymentRead:
        """The payment; replayed from its events when the read model has not caught up yet."""
        merchant_id, daybook = merchant_of(request), request.app.state.daybook
        return await read_one(
            request,
            PAYMENT_PROJECTIONS,
            None,
            lambda conn: read_store.payment(conn, merchant_id, payment_id),
            lambda _: PaymentRead.of(daybook.get_payment(merchant_id, payment_id)),
        )

    @get("/", operation_id="listPayments", opt=merchant_or_auditor)
    async def list_payments(
        self,
        request: Request[Any, Any, Any],
    ) -> PaymentPage:
        """Payments in creation order, optionally of one order, a page at a time."""
        merchant_id, page_size = merchant_of(request), limit_of(request)
        order_id = uuid_of(request, "order_id")
        after = decode_time_id_cursor(query_value(request, "cursor"))
        daybook: Daybook = request.app.state.daybook

        def replayed(key: uuid.UUID) -> list[PaymentRead]:
            payment = daybook.replay_owned(key, Payment, merchant_id)
            if payment is None or (order_id is not None and payment.order_id != order_id):
                return []
            return [PaymentRead.of(payment.view())] if (payment.created_at, payment.id) > after else []

        rows, next_cursor = await read_page(
            request,
            PAYMENT_PROJECTIONS,
            page_size,
            lambda conn, size: read_store.payments(conn, merchant_id, order_id, after, size),
            lambda row: time_id_cursor(row.created_at, row.id),
            quarantined=[Quarantined(PaymentsProjection.default_name, replayed, lambda row: (row.created_at, row.id))],
        )
        return PaymentPage(rows, next_cursor)


class ReconciliationController(Controller):
    """What a person should reconcile: payment anomalies and unfulfillable paid orders."""

    path = "/v1/reconciliation"
    tags = ["reconciliation"]

    @get("/issues", operation_id="listReconciliationIssues", opt=merchant_or_auditor)
    async def issues(
        self,
        request: Request[Any, Any, Any],
    ) -> IssuePage:
        """Payments without a known order, overpayments, currency mismatches, paid_unfulfillable orders."""
        merchant_id, page_size = merchant_of(request), limit_of(request)
        after = decode_issue_cursor(query_value(request, "cursor"))
        daybook: Daybook = request.app.state.daybook

        def sort_key(row: IssueRow) -> tuple[datetime, uuid.UUID, str]:
            return (row.created_at, row.sort_id, row.kind)

        def of_payment(key: uuid.UUID) -> list[IssueRow]:
            payment = daybook.replay_owned(key, Payment, merchant_id)
            rows = read_store.payment_issues(payment.view()) if payment is not None else []
            return [row for row in rows if sort_key(row) > after]

        def of_order(key: uuid.UUID) -> list[IssueRow]:
            order = daybook.replay_owned(key, Order, merchant_id)
            rows = read_store.order_issues(order.view()) if order is not None else []
            return [row for row in rows if sort_key(row) > after]

        rows, next_cursor = await read_page(
            request,
            ISSUE_PROJECTIONS,
            page_size,
            lambda conn, size: read_store.reconciliation_issues(conn, merchant_id, after, size),
            lambda row: issue_cursor(row.created_at, row.sort_id, row.kind),
            quarantined=[
                Quarantined(PaymentsProjection.default_name, of_payment, sort_key),
                Quarantined(OrdersProjection.default_name, of_order, sort_key),
            ],
        )
        return IssuePage([IssueRead(row.kind, row.detail, row.order_id, row.payment_id) for row in rows], next_cursor)
