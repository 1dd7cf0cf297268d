"""``/v1/inventory``: receipts, adjustments, levels."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio.to_thread
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from api import read_store
from api.auth import merchant_only, merchant_or_auditor
from api.bodies import strict_body
from api.commands import check_as_of, check_sku, context_of, merchant_of, run
from api.consistency import wait_for_position
from api.idempotency import IdempotencyMiddleware
from api.pagination import check_limit, decode_cursor, encode_cursor
from api.problems import ApiError
from api.schemas import AdjustmentCreate, LevelPage, LevelRead, ReceiptCreate
from domain.commands import AdjustStock, ReceiveStock
from domain.errors import InventoryItemNotFoundError

PROJECTIONS = ("inventory_levels",)


class InventoryController(Controller):
    """Stock of the caller's merchant."""

    path = "/v1/inventory"
    tags = ["inventory"]
    middleware = [IdempotencyMiddleware]

    @post("/{sku:str}/receipts", operation_id="receiveStock", status_code=201, guards=[merchant_only])
    async def receive(
        self, request: Request[Any, Any, Any], sku: FromPath[str], data: JSONBody[ReceiptCreate]
    ) -> Response[LevelRead]:
        """Records units received; creates the SKU on its first receipt."""
        data = await strict_body(request, ReceiptCreate)
        command = ReceiveStock(context_of(request), merchant_of(request), check_sku(sku), data.quantity, data.reference)
        level, headers = await run(request, command)
        return Response(LevelRead.of(level), status_code=201, headers=headers)

    @post(
        "/{sku:str}/adjustments",
        operation_id="adjustStock",
        status_code=201,
        guards=[merchant_only],
    )
    async def adjust(
        self, request: Request[Any, Any, Any], sku: FromPath[str], data: JSONBody[AdjustmentCreate]
    ) -> Response[LevelRead]:
        """Corrects on-hand stock; never below what is reserved (409 ``insufficient_stock``)."""
        data = await strict_body(request, AdjustmentCreate)
        if data.delta == 0:
            raise ApiError(400, "invalid_request", "delta must not be 0.")
        command = AdjustStock(context_of(request), merchant_of(request), check_sku(sku), data.delta, data.reason)
        level, headers = await run(request, command)
        return Response(LevelRead.of(level), status_code=201, headers=headers)

    @get("/{sku:str}", operation_id="getInventoryLevel", guards=[merchant_or_auditor])
    async def level(
        self,
        request: Request[Any, Any, Any],
        sku: FromPath[str],
        as_of: FromQuery[datetime | None] = None,
    ) -> LevelRead:
        """The level of one SKU, now or (``?as_of=``) as it was then, replayed from events."""
        merchant_id, sku = merchant_of(request), check_sku(sku)
        state = request.app.state
        if as_of is None:
            await wait_for_position(state, request.headers.get("x-daybook-min-position"), PROJECTIONS)

            def from_read_model() -> LevelRead | None:
                with state.pool.connection() as conn:
                    return read_store.level(conn, merchant_id, sku)

            found = await anyio.to_thread.run_sync(from_read_model)
            if found is not None:
                return found
        # Not projected yet (or a past instant): the event stream is the truth.
        when = check_as_of(as_of)
        try:
            replayed = await anyio.to_thread.run_sync(lambda: state.daybook.get_inventory_level(merchant_id, sku, when))
        except InventoryItemNotFoundError as error:
            raise ApiError(404, "not_found", f"No stock of {sku} was recorded.") from error
        return LevelRead.of(replayed)

    @get("/", operation_id="listInventoryLevels", guards=[merchant_or_auditor])
    async def levels(
        self,
        request: Request[Any, Any, Any],
        limit: FromQuery[int | None] = None,
        cursor: FromQuery[str | None] = None,
    ) -> LevelPage:
        """Levels in SKU order, a page at a time."""
        merchant_id, page_size = merchant_of(request), check_limit(limit)
        after = decode_cursor(cursor, 1)
        after_sku = str(after[0]) if after else ""
        state = request.app.state
        await wait_for_position(state, request.headers.get("x-daybook-min-position"), PROJECTIONS)

        def page() -> list[LevelRead]:
            with state.pool.connection() as conn:
                return read_store.levels(conn, merchant_id, after_sku, page_size + 1)

        rows = await anyio.to_thread.run_sync(page)
        more = len(rows) > page_size
        rows = rows[:page_size]
        return LevelPage(rows, encode_cursor(rows[-1].sku) if more else None)
