"""``Idempotency-Key`` on merchant POSTs: same key and body → the stored answer again.

Runs as route middleware after authentication. The first request with a key claims it
in PostgreSQL, runs, and stores its answer (anything below 500; a 5xx releases the key
so the client can retry). A repeat with the same body gets the stored status and body
with ``Idempotent-Replayed: true``; a different body gets 409 ``idempotency_key_reused``;
a repeat while the first still runs gets 409 ``idempotency_key_in_use``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from adapters import idempotency_keys
from api.auth import MERCHANT, Principal
from api.problems import ApiError
from domain import limits

HEADER = b"idempotency-key"
REPLAYED_HEADERS = ("content-type", "x-daybook-position", "location")


class IdempotencyMiddleware:
    """ASGI middleware for POST routes of merchants."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = _idempotency_key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        principal: Principal = scope["user"]
        merchant_id = principal.merchant_id
        if principal.role != MERCHANT or merchant_id is None:
            # Keys belong to the merchant: a refused auditor request must not take one (the guard answers 403).
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        try:
            body, receive_again = await _buffer(receive, state.settings.body_size_max_bytes)
        except ClientDisconnectedError:
            return  # nothing ran and nobody listens: the key stays free for the client's retry
        body_hash = request_hash(scope["method"], scope["path"], scope.get("query_string", b""), body)
        ttl = timedelta(hours=state.settings.idempotency_ttl_hours)
        lock = timedelta(seconds=state.settings.idempotency_lock_seconds)

        def claim() -> datetime | idempotency_keys.StoredRequest:
            with state.pool.connection() as conn:
                return idempotency_keys.claim_or_find(conn, merchant_id, key, body_hash, ttl, lock=lock)

        claimed = await anyio.to_thread.run_sync(claim)
        if isinstance(claimed, idempotency_keys.StoredRequest):
            await _answer_repeat(claimed, body_hash, send)
            return
        await self._run_and_store(scope, receive_again, send, merchant_id, key, claimed_at=claimed)

    async def _run_and_store(
        self, scope: Scope, receive: Receive, send: Send, merchant_id: uuid.UUID, key: str, *, claimed_at: datetime
    ) -> None:
        state = scope["app"].state
        status = 500
        headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    decoded = bytes(name).decode("latin-1").lower()
                    if decoded in REPLAYED_HEADERS:
                        headers[decoded] = bytes(value).decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
            await send(message)

        def finish() -> None:
            with state.pool.connection() as conn:
                if status < 500:
                    body = b"".join(chunks)
                    idempotency_keys.complete(
                        conn, merchant_id, key, claimed_at, status_code=status, headers=headers, body=body
                    )
                else:
                    idempotency_keys.release(conn, merchant_id, key, claimed_at)

        try:
            await self.app(scope, receive, capture)
        finally:
            await anyio.to_thread.run_sync(finish)


def request_hash(method: str, path: str, query: bytes, body: bytes) -> bytes:
    """What identifies a request for its key: method, path, query and the exact body bytes."""
    return hashlib.sha256(b"%s %s?%s\n%s" % (method.encode(), path.encode(), query, body)).digest()


def _idempotency_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            key = bytes(value).decode("latin-1")
            if not 1 <= len(key) <= limits.IDEMPOTENCY_KEY_LENGTH_MAX:
                detail = f"Idempotency-Key must be 1-{limits.IDEMPOTENCY_KEY_LENGTH_MAX} characters."
                raise ApiError(400, "invalid_request", detail)
            return key
    return None


class ClientDisconnectedError(Exception):
    """The client went away before its whole body arrived."""


async def _buffer(receive: Receive, size_max: int) -> tuple[bytes, Receive]:
    """Reads the whole body, refusing more than ``size_max`` bytes.

    A body cut short by a disconnect is not a request: hashing it would store its 400
    under the key and answer the client's full retry 409 ``idempotency_key_reused``.

    Raises:
        ApiError: 413 past ``size_max``.
        ClientDisconnectedError: the client disconnected before the body ended.
    """
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnectedError
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > size_max:
            raise ApiError(413, "payload_too_large", f"The body is over {size_max} bytes.")
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    sent = False

    async def receive_again() -> Any:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, receive_again


async def _answer_repeat(earlier: idempotency_keys.StoredRequest, body_hash: bytes, send: Send) -> None:
    if earlier.request_sha256 != body_hash:
        raise ApiError(409, "idempotency_key_reused", "This Idempotency-Key was used with a different request.")
    if earlier.state != "done" or earlier.status_code is None:
        raise ApiError(409, "idempotency_key_in_use", "A request with this key is still running.")
    headers = [(k.encode(), v.encode()) for k, v in (earlier.headers or {}).items()]
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": earlier.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": earlier.body or b"", "more_body": False})
