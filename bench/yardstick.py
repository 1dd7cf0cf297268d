"""The yardstick: the most a one-process Python HTTP service does on this machine right now.

    .venv/bin/python -m uvicorn bench.yardstick:app --loop uvloop --http httptools --no-access-log

A raw ASGI application (no framework, no database): it reads the body of any ``POST``,
decodes it as the order body of ``POST /v1/orders`` with msgspec (the same strictness:
unknown fields refused, bounded fields) and answers 201 with an order-shaped JSON body,
also encoded by msgspec. ``bench/deployment.py`` loads it with the same wrk settings as
Daybook and divides Daybook's figures by its own.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Annotated, Any

import msgspec

_Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
_Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class _Money(msgspec.Struct, forbid_unknown_fields=True):
    amount: Annotated[int, msgspec.Meta(ge=0)]
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: _Sku
    quantity: _Quantity
    unit_price: _Money


class _OrderCreate(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[list[_Line], msgspec.Meta(min_length=1, max_length=100)]
    currency: str
    customer_ref: str | None = None
    hold_seconds: int = 900


class _OrderRead(msgspec.Struct):
    id: uuid.UUID
    status: str
    lines: list[_Line]
    total: _Money
    amount_captured: _Money
    amount_refunded: _Money
    payment_ids: list[uuid.UUID]
    hold_expires_at: str
    created_at: str
    updated_at: str


_decode = msgspec.json.Decoder(_OrderCreate).decode
_encode = msgspec.json.Encoder().encode
_ids = itertools.count(1)
_START = {
    "type": "http.response.start",
    "status": 201,
    "headers": [(b"content-type", b"application/json")],
}
_BAD = {"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]}
_NOW = "2026-12-02T00:00:00Z"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application: ``POST`` an order body, get an order back."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    try:
        order = _decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        await send(_BAD)
        await send({"type": "http.response.body", "body": b'{"code":"invalid_request"}'})
        return
    total = sum(line.quantity * line.unit_price.amount for line in order.lines)
    zero = _Money(0, order.currency)
    read = _OrderRead(
        uuid.UUID(int=next(_ids)),
        "reserved",
        order.lines,
        _Money(total, order.currency),
        zero,
        zero,
        [],
        _NOW,
        _NOW,
        _NOW,
    )
    await send(_START)
    await send({"type": "http.response.body", "body": _encode(read)})
