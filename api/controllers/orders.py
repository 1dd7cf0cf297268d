"""``/v1/orders``: place, read, list, cancel, own events."""

from __future__ import annotations

import uuid
from typing import Any

import anyio.to_thread
from litestar import Controller, Request, get, post
from litestar.params import FromPath

from adapters.committers import CommandRouter
from api import read_store
from api.answers import JsonAnswer
from api.auth import merchant_only, merchant_or_auditor
from api.bodies import strict_body
from api.commands import POSITION_HEADER, context_of, merchant_of, run
from api.idempotency import IdempotencyMiddleware
from api.pagination import decode_time_id_cursor, decode_version_cursor, time_id_cursor, version_cursor
from api.problems import ApiError
from api.queries import as_of_of, choice_of, limit_of, query_value
from api.reads import Quarantined, read_one, read_page
from api.schemas import EventPage, OrderCreate, OrderPage, OrderRead
from domain import limits
from domain.application import Daybook
from domain.commands import CancelOrder, PlaceOrder
from domain.errors import OrderAlreadyExistsError, OrderNotFoundError
from domain.inventory import inventory_item_id
from domain.money import Money
from domain.orders import Order, OrderLine, OrderView, check_order_lines
from projections.orders import OrdersProjection

PROJECTIONS = ("orders",)
# An order placed with an Idempotency-Key gets an id derived from it, so a retry after a
# crash between commit and answer finds the order instead of placing a second one.
ORDER_ID_NAMESPACE = uuid.UUID("0b7f5e62-3a55-4c1e-8d0e-2f41b8a1c7d3")
STATUSES = (
    "reserved",
    "paid",
    "partially_refunded",
    "refunded",
    "cancelled",
    "expired",
    "disputed",
    "paid_unfulfillable",
)


class OrdersController(Controller):
    """Orders of the caller's merchant."""

    path = "/v1/orders"
    tags = ["orders"]
    middleware = [IdempotencyMiddleware]

    @post("/", operation_id="placeOrder", status_code=201, opt=merchant_only)
    async def place(self, request: Request[Any, Any, Any]) -> JsonAnswer:
        """Places an order holding stock for every line, all or nothing (409 ``out_of_stock``)."""
        data = await strict_body(request, OrderCreate)
        merchant_id = merchant_of(request)
        key = request.headers.get("idempotency-key")
        order_id = uuid.uuid5(ORDER_ID_NAMESPACE, f"{merchant_id}:{key}") if key else uuid.uuid4()
        lines = tuple(
            OrderLine(line.sku, line.quantity, Money(line.unit_price.amount, line.unit_price.currency))
            for line in data.lines
        )
        command = PlaceOrder(
            context_of(request),
            merchant_id,
            order_id,
            lines,
            data.currency,
            data.customer_ref,
            data.hold_seconds,
            may_exist=key is not None,
        )
        try:
            view, headers = await run(request, command)
        except OrderAlreadyExistsError as error:
            # Without a key the id is this request's own: it exists only if an earlier send
            # of this very command (forwarded, its answer lost) placed it.
            if not key and not getattr(error, "placed_by_this_request", False):
                raise
            view, headers = await _placed_before(request, command)
        return JsonAnswer(OrderRead.of(view), status=201, headers=headers)

    @get("/{order_id:uuid}", operation_id="getOrder", opt=merchant_or_auditor)
    async def get_one(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
    ) -> OrderRead:
        """The order, now or (``?as_of=``) as it was then, replayed from events."""
        merchant_id, daybook, as_of = merchant_of(request), request.app.state.daybook, as_of_of(request)
        return await read_one(
            request,
            PROJECTIONS,
            as_of,
            lambda conn: read_store.order(conn, merchant_id, order_id),
            lambda when: OrderRead.of(daybook.get_order(merchant_id, order_id, when)),
        )

    @get("/", operation_id="listOrders", opt=merchant_or_auditor)
    async def list_orders(
        self,
        request: Request[Any, Any, Any],
    ) -> OrderPage:
        """Orders in creation order, optionally of one status, a page at a time."""
        merchant_id, page_size = merchant_of(request), limit_of(request)
        status = choice_of(request, "status", STATUSES)
        after = decode_time_id_cursor(query_value(request, "cursor"))
        daybook: Daybook = request.app.state.daybook

        def replayed(order_id: uuid.UUID) -> list[OrderRead]:
            order = daybook.replay_owned(order_id, Order, merchant_id)
            if order is None or (status is not None and order.status != status):
                return []
            return [OrderRead.of(order.view())] if (order.created_at, order.id) > after else []

        rows, next_cursor = await read_page(
            request,
            PROJECTIONS,
            page_size,
            lambda conn, size: read_store.orders(conn, merchant_id, status, after, size),
            lambda order: time_id_cursor(order.created_at, order.id),
            quarantined=[
                Quarantined(OrdersProjection.default_name, replayed, lambda order: (order.created_at, order.id))
            ],
        )
        return OrderPage(rows, next_cursor)

    @post(
        "/{order_id:uuid}/cancel",
        operation_id="cancelOrder",
        status_code=200,
        opt=merchant_only,
    )
    async def cancel(self, request: Request[Any, Any, Any], order_id: FromPath[uuid.UUID]) -> JsonAnswer:
        """Cancels a reserved order and releases its stock (409 ``invalid_state`` once paid)."""
        if await request.body():
            raise ApiError(400, "invalid_request", "Cancel takes no body.")
        merchant_id = merchant_of(request)
        command = CancelOrder(context_of(request), merchant_id, order_id)
        view, headers = await run(
            request, command, routing_id=await _release_routing_id(request, merchant_id, order_id)
        )
        return JsonAnswer(OrderRead.of(view), status=200, headers=headers)

    @get("/{order_id:uuid}/events", operation_id="listOrderEvents", opt=merchant_or_auditor)
    async def events(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
    ) -> EventPage:
        """The order's own event stream, in version order."""
        merchant_id, state = merchant_of(request), request.app.state
        page_size = limit_of(request, limits.EVENT_PAGE_SIZE_MAX)
        after_version = decode_version_cursor(query_value(request, "cursor"))

        def page() -> Any:
            with state.pool.connection() as conn:
                mapper = state.daybook.mapper
                rows = read_store.stream_events(conn, mapper, order_id, after_version, page_size + 1)
                # Ownership is decided by the stream's first event, whatever page is asked for.
                first = rows[:1] if after_version == 0 else read_store.stream_events(conn, mapper, order_id, 0, 1)
                return first, rows

        first, rows = await anyio.to_thread.run_sync(page)
        if not first or first[0].stream_type != "Order" or first[0].data.get("merchant_id") != str(merchant_id):
            raise ApiError(404, "not_found", "No such order.")
        more = len(rows) > page_size
        rows = rows[:page_size]
        return EventPage(rows, version_cursor(rows[-1].version) if more else None)


async def _release_routing_id(request: Request[Any, Any, Any], merchant_id: uuid.UUID, order_id: uuid.UUID) -> Any:
    """Where a cancel runs when several processes share the committers: at its order's lowest SKU.

    The release writes the order's items, so it goes where their holds were made (see
    ``domain/commands/routing.py``); ``None`` (the order's own partition) for an order
    that is not found, which the command then reports.
    """
    if not isinstance(request.app.state.commands, CommandRouter):
        return None
    daybook: Daybook = request.app.state.daybook
    try:
        view = await anyio.to_thread.run_sync(daybook.get_order, merchant_id, order_id)
    except OrderNotFoundError:
        return None
    skus = [line.sku for line in view.lines]
    return inventory_item_id(merchant_id, min(skus)) if skus else None


async def _placed_before(request: Request[Any, Any, Any], command: PlaceOrder) -> tuple[OrderView, dict[str, str]]:
    """The order an earlier run with the same Idempotency-Key placed (its answer was lost, or the key expired).

    Only the same order is an answer: a key reused for another order after its record expired is 409.
    """
    state = request.app.state

    def load() -> tuple[OrderView, int]:
        view = state.daybook.get_order(command.merchant_id, command.order_id)
        return view, state.daybook.recorder.max_notification_id() or 0

    view, position = await anyio.to_thread.run_sync(load)
    held_for_seconds = (view.hold_expires_at - view.created_at).total_seconds()
    same = (
        view.currency == command.currency
        and view.customer_ref == command.customer_ref
        and list(view.lines) == check_order_lines(command.lines, command.currency)
        and abs(held_for_seconds - command.hold_seconds) < 1
    )
    if not same:
        raise ApiError(409, "idempotency_key_reused", "This Idempotency-Key already placed a different order.")
    return view, {POSITION_HEADER: str(position)}
