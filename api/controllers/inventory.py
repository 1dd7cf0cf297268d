"""``/v1/inventory``: receipts, adjustments, levels."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath

from api import read_store
from api.answers import JsonAnswer
from api.auth import merchant_only, merchant_or_auditor
from api.bodies import strict_body
from api.commands import context_of, merchant_of, once_per_key, run
from api.idempotency import IdempotencyMiddleware
from api.pagination import decode_level_cursor, level_cursor
from api.queries import as_of_of, limit_of, query_value
from api.reads import Quarantined, read_one, read_page
from api.schemas import AdjustmentCreate, LevelPage, LevelRead, ReceiptCreate
from domain.application import Daybook
from domain.commands import AdjustStock, ReceiveStock
from domain.inventory import InventoryItem, InventoryLevel
from domain.validation import check_sku
from projections.inventory import InventoryLevelsProjection

PROJECTIONS = ("inventory_levels",)


class InventoryController(Controller):
    """Stock of the caller's merchant."""

    path = "/v1/inventory"
    tags = ["inventory"]
    middleware = [IdempotencyMiddleware]

    @post("/{sku:str}/receipts", operation_id="receiveStock", status_code=201, opt=merchant_only)
    async def receive(self, request: Request[Any, Any, Any], sku: FromPath[str]) -> JsonAnswer:
        """Records units received; creates the SKU on its first receipt."""
        data = await strict_body(request, ReceiptCreate)
        command = ReceiveStock(context_of(request), merchant_of(request), check_sku(sku), data.quantity, data.reference)
        level, headers = await run(request, await once_per_key(request, command, InventoryLevel.from_record))
        return JsonAnswer(LevelRead.of(level), status=201, headers=headers)

    @post(
        "/{sku:str}/adjustments",
        operation_id="adjustStock",
        status_code=201,
        opt=merchant_only,
    )
    async def adjust(self, request: Request[Any, Any, Any], sku: FromPath[str]) -> JsonAnswer:
        """Corrects on-hand stock; never below what is reserved (409 ``insufficient_stock``)."""
        data = await strict_body(request, AdjustmentCreate)
        command = AdjustStock(context_of(request), merchant_of(request), check_sku(sku), data.delta, data.reason)
        level, headers = await run(request, await once_per_key(request, command, InventoryLevel.from_record))
        return JsonAnswer(LevelRead.of(level), status=201, headers=headers)

    @get("/{sku:str}", operation_id="getInventoryLevel", opt=merchant_or_auditor)
    async def level(
        self,
        request: Request[Any, Any, Any],
        sku: FromPath[str],
    ) -> LevelRead:
        """The level of one SKU, now or (``?as_of=``) as it was then, replayed from events."""
        merchant_id, sku, as_of = merchant_of(request), check_sku(sku), as_of_of(request)
        daybook = request.app.state.daybook
        return await read_one(
            request,
            PROJECTIONS,
            as_of,
            lambda conn: read_store.level(conn, merchant_id, sku),
            lambda when: LevelRead.of(daybook.get_inventory_level(merchant_id, sku, when)),
        )

    @get("/", operation_id="listInventoryLevels", opt=merchant_or_auditor)
    async def levels(
        self,
        request: Request[Any, Any, Any],
    ) -> LevelPage:
        """Levels in SKU order, a page at a time."""
        merchant_id, page_size = merchant_of(request), limit_of(request)
        after_sku = decode_level_cursor(query_value(request, "cursor"))
        daybook: Daybook = request.app.state.daybook

        def replayed(item_id: UUID) -> list[LevelRead]:
            item = daybook.replay_owned(item_id, InventoryItem, merchant_id)
            return [LevelRead.of(item.level())] if item is not None and item.sku > after_sku else []

        rows, next_cursor = await read_page(
            request,
            PROJECTIONS,
            page_size,
            lambda conn, size: read_store.levels(conn, merchant_id, after_sku, size),
            lambda level: level_cursor(level.sku),
            quarantined=[Quarantined(InventoryLevelsProjection.default_name, replayed, lambda level: level.sku)],
        )
        return LevelPage(rows, next_cursor)
