"""``/v1/payments`` (read-only; payments are created by webhooks) and ``/v1/reconciliation``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import anyio.to_thread
from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery

from api.auth import merchant_or_auditor
from api.commands import merchant_of
from api.consistency import wait_for_position
from api.pagination import check_limit, decode_cursor, encode_cursor
from api.problems import ApiError
from api.schemas import IssuePage, IssueRead, PaymentPage, PaymentRead
from domain.errors import PaymentNotFoundError
from domain.payments import PaymentView
from projections import payments as payments_store
from projections.payments import IssueRow, PaymentRow

PAYMENT_PROJECTIONS = ("payments",)
ISSUE_PROJECTIONS = ("payments", "orders")
EPOCH = datetime.fromisoformat("0001-01-01T00:00:00+00:00")
NIL = uuid.UUID(int=0)
BAD_CURSOR = "The cursor is not one this API returned."


class PaymentsController(Controller):
    """Payments of the caller's merchant."""

    path = "/v1/payments"
    tags = ["payments"]
    guards = [merchant_or_auditor]

    @get("/{payment_id:uuid}", operation_id="getPayment")
    async def get_one(self, request: Request[Any, Any, Any], payment_id: FromPath[uuid.UUID]) -> PaymentRead:
        """The payment; replayed from its events when the read model has not caught up yet."""
        merchant_id, state = merchant_of(request), request.app.state
        await wait_for_position(state, request.headers.get("x-daybook-min-position"), PAYMENT_PROJECTIONS)

        def from_read_model() -> PaymentRow | None:
            with state.pool.connection() as conn:
                return payments_store.payment(conn, merchant_id, payment_id)

        row = await anyio.to_thread.run_sync(from_read_model)
        if row is not None:
            return _payment(row)
        try:
            view = await anyio.to_thread.run_sync(lambda: state.daybook.get_payment(merchant_id, payment_id))
        except PaymentNotFoundError as error:
            raise ApiError(404, "not_found", "No such payment.") from error
        return _payment_of_view(view)

    @get("/", operation_id="listPayments")
    async def list_payments(
        self,
        request: Request[Any, Any, Any],
        order_id: FromQuery[uuid.UUID | None] = None,
        limit: FromQuery[int | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> PaymentPage:
        """Payments in creation order, optionally of one order, a page at a time."""
        merchant_id, page_size, state = merchant_of(request), check_limit(limit), request.app.state
        position = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(position[0]), uuid.UUID(position[1])) if position else (EPOCH, NIL)
        except (TypeError, ValueError) as error:
            raise ApiError(400, "invalid_request", BAD_CURSOR) from error
        await wait_for_position(state, request.headers.get("x-daybook-min-position"), PAYMENT_PROJECTIONS)

        def page() -> list[PaymentRow]:
            with state.pool.connection() as conn:
                return payments_store.payments(conn, merchant_id, order_id, after, page_size + 1)

        rows = await anyio.to_thread.run_sync(page)
        more = len(rows) > page_size
        rows = rows[:page_size]
        next_cursor = encode_cursor(rows[-1].created_at.isoformat(), str(rows[-1].id)) if more else None
        return PaymentPage([_payment(row) for row in rows], next_cursor)


class ReconciliationController(Controller):
    """What a person should reconcile: payment anomalies and unfulfillable paid orders."""

    path = "/v1/reconciliation"
    tags = ["reconciliation"]
    guards = [merchant_or_auditor]

    @get("/issues", operation_id="listReconciliationIssues")
    async def issues(
        self,
        request: Request[Any, Any, Any],
        limit: FromQuery[int | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> IssuePage:
        """Payments without a known order, overpayments, currency mismatches, paid_unfulfillable orders."""
        merchant_id, page_size, state = merchant_of(request), check_limit(limit), request.app.state
        position = decode_cursor(cursor, 3)
        try:
            after = (
                (datetime.fromisoformat(position[0]), uuid.UUID(position[1]), str(position[2]))
                if position
                else (EPOCH, NIL, "")
            )
        except (TypeError, ValueError) as error:
            raise ApiError(400, "invalid_request", BAD_CURSOR) from error
        await wait_for_position(state, request.headers.get("x-daybook-min-position"), ISSUE_PROJECTIONS)

        def page() -> list[IssueRow]:
            with state.pool.connection() as conn:
                return payments_store.reconciliation_issues(conn, merchant_id, after, page_size + 1)

        rows = await anyio.to_thread.run_sync(page)
        more = len(rows) > page_size
        rows = rows[:page_size]
        last = rows[-1] if more else None
        next_cursor = encode_cursor(last.created_at.isoformat(), str(last.sort_id), last.kind) if last else None
        return IssuePage([IssueRead(row.kind, row.detail, row.order_id, row.payment_id) for row in rows], next_cursor)


def _payment(row: PaymentRow) -> PaymentRead:
    return PaymentRead(
        id=row.id,
        order_id=row.order_id,
        gateway=row.gateway,
        gateway_ref=row.gateway_ref,
        status=row.status,
        amount_authorized=row.amount_authorized,
        amount_captured=row.amount_captured,
        amount_refunded=row.amount_refunded,
        currency=row.currency,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _payment_of_view(view: PaymentView) -> PaymentRead:
    return PaymentRead(
        id=view.id,
        order_id=view.order_id,
        gateway=view.gateway,
        gateway_ref=view.gateway_ref,
        status=str(view.status),
        amount_authorized=view.amount_authorized,
        amount_captured=view.amount_captured,
        amount_refunded=view.amount_refunded,
        currency=view.currency,
        created_at=view.created_at,
        updated_at=view.updated_at,
    )
