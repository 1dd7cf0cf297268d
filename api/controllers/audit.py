"""``/v1/audit``: the merchant's chained events (JSON pages or streamed NDJSON), one stream, the digest, verify.

Auditor and merchant keys read their own merchant's audit trail; another merchant's
stream is 404. Reads go through ``adapters/audit_store.py`` (functions that show the
transaction's merchant only) on the read role's connections; verification writes its
checkpoint as the owner (``adapters/audit_verification.py``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import FromPath
from litestar.response import Stream

from adapters import audit_store
from adapters.audit_verification import verify
from api.auth import merchant_or_auditor
from api.commands import merchant_of
from api.consistency import HEADER, wait_for_position
from api.pagination import decode_version_cursor, version_cursor
from api.problems import ApiError
from api.queries import limit_of, query_value
from api.reads import merchant_rows
from api.schemas import DigestRead, MismatchRead, VerificationRead
from domain import limits
from domain.validation import has_control_characters
from projections.audit_chain import AuditChainProjection

PROJECTIONS: Final = (AuditChainProjection.default_name,)
NDJSON: Final = "application/x-ndjson"
POSITION_PATTERN: Final = r"^[0-9]{1,18}$"
"""``after``: a position (the ``next_cursor`` of a page, or the last line of an export)."""
_POSITION = re.compile(POSITION_PATTERN.removeprefix("^").removesuffix("$"))
_ENCODER: Final = msgspec.json.Encoder()


def _after_of(request: Request[Any, Any, Any]) -> int:
    raw = query_value(request, "after")
    if raw is None:
        return 0
    if _POSITION.fullmatch(raw) is None:
        raise ApiError(400, "invalid_request", "after must be a position: 1 to 18 ASCII digits.")
    return int(raw)


def _trace_of(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    request_id, causation_id = query_value(request, "request_id"), query_value(request, "causation_id")
    for name, value in (("request_id", request_id), ("causation_id", causation_id)):
        if value is not None and not 1 <= len(value) <= limits.TRACE_ID_LENGTH_MAX:
            raise ApiError(400, "invalid_request", f"{name} must be 1 to {limits.TRACE_ID_LENGTH_MAX} characters.")
        if value is not None and has_control_characters(value):  # no id has them; PostgreSQL text takes no NUL
            raise ApiError(400, "invalid_request", f"{name} must not contain control characters.")
    return request_id, causation_id


def _wants_ndjson(request: Request[Any, Any, Any]) -> bool:
    return NDJSON in request.headers.get("accept", "").lower()


class AuditController(Controller):
    """The caller's merchant's audit trail."""

    path = "/v1/audit"
    tags = ["audit"]

    @get("/events", operation_id="listAuditEvents", opt=merchant_or_auditor)
    async def events(self, request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
        """The merchant's chained events in position order: a JSON page, or (``Accept: application/x-ndjson``) all."""
        merchant_id, after, trace = merchant_of(request), _after_of(request), _trace_of(request)
        ndjson = _wants_ndjson(request)
        raw_limit = query_value(request, "limit")
        page_size = limit_of(request, limits.EVENT_PAGE_SIZE_MAX)
        await wait_for_position(request.app.state, request.headers.get(HEADER), PROJECTIONS)
        if ndjson:
            total = None if raw_limit is None else page_size
            lines = _ndjson(request, merchant_id, after, trace, total)
            # The first page is read before the answer starts: a database that fails it is
            # answered 503 like any request (once streaming, a failure can only cut the body).
            first = await anext(lines, None)
            return Stream(_prefixed(first, lines), media_type=NDJSON)
        events = await anyio.to_thread.run_sync(_page, request, merchant_id, after, trace, page_size + 1)
        more = len(events) > page_size
        events = events[:page_size]
        page = {"data": events, "next_cursor": str(events[-1]["position"]) if more else None}
        return Response(_ENCODER.encode(page), media_type="application/json")

    @get("/streams/{stream_id:uuid}/events", operation_id="listAuditStreamEvents", opt=merchant_or_auditor)
    async def stream(self, request: Request[Any, Any, Any], stream_id: FromPath[uuid.UUID]) -> Response[bytes]:
        """One stream of the merchant, in version order (another merchant's stream is 404)."""
        merchant_id, state = merchant_of(request), request.app.state
        page_size = limit_of(request, limits.EVENT_PAGE_SIZE_MAX)
        after_version = decode_version_cursor(query_value(request, "cursor"))
        await wait_for_position(state, request.headers.get(HEADER), PROJECTIONS)

        def read() -> tuple[list[dict[str, Any]], bool]:
            with merchant_rows(state.read_pool, merchant_id) as conn:
                rows = audit_store.stream_rows(conn, stream_id, after_version, page_size + 1)
                exists = bool(rows) or (after_version > 0 and audit_store.stream_exists(conn, stream_id))
            return [audit_store.exported_event(state.daybook.mapper, row) for row in rows], exists

        events, exists = await anyio.to_thread.run_sync(read)
        if not exists:
            raise ApiError(404, "not_found", "No such stream.")
        more = len(events) > page_size
        events = events[:page_size]
        page = {"data": events, "next_cursor": version_cursor(events[-1]["version"]) if more else None}
        return Response(_ENCODER.encode(page), media_type="application/json")

    @get("/digest", operation_id="getAuditDigest", opt=merchant_or_auditor)
    async def digest(self, request: Request[Any, Any, Any]) -> DigestRead:
        """The latest signed digest of the merchant's chain (404 before its first event is chained)."""
        merchant_id, state = merchant_of(request), request.app.state
        await wait_for_position(state, request.headers.get(HEADER), PROJECTIONS)

        def read() -> dict[str, Any] | None:
            with merchant_rows(state.read_pool, merchant_id) as conn:
                return audit_store.latest_digest(conn, merchant_id)

        found = await anyio.to_thread.run_sync(read)
        if found is None:
            raise ApiError(404, "not_found", "No digest yet: the merchant has no chained event.")
        return msgspec.convert(found, DigestRead)

    @get("/verify", operation_id="verifyAuditChain", opt=merchant_or_auditor)
    async def verify(self, request: Request[Any, Any, Any]) -> VerificationRead:
        """Recomputes a bounded part of the chain from the stored events (forward from a checkpoint, plus a sweep)."""
        merchant_id, state = merchant_of(request), request.app.state
        await wait_for_position(state, request.headers.get(HEADER), PROJECTIONS)

        def run() -> VerificationRead:
            with state.pool.connection() as conn:
                found = verify(conn, state.daybook.mapper, merchant_id, state.settings.audit_verify_events_max)
            mismatch = found.first_mismatch
            return VerificationRead(
                found.ok,
                found.events_checked,
                MismatchRead(mismatch.position, mismatch.reason) if mismatch else None,
            )

        return await anyio.to_thread.run_sync(run)


def _page(
    request: Request[Any, Any, Any],
    merchant_id: uuid.UUID,
    after: int,
    trace: tuple[str | None, str | None],
    limit: int,
) -> list[dict[str, Any]]:
    state = request.app.state
    with merchant_rows(state.read_pool, merchant_id) as conn:
        rows = audit_store.event_rows(conn, after, limit, request_id=trace[0], causation_id=trace[1])
    return [audit_store.exported_event(state.daybook.mapper, row) for row in rows]


async def _prefixed(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``first``, then the rest of the stream it came from (nothing when it was empty)."""
    if first is None:
        return
    yield first
    async for lines in rest:
        yield lines


async def _ndjson(
    request: Request[Any, Any, Any],
    merchant_id: uuid.UUID,
    after: int,
    trace: tuple[str | None, str | None],
    total: int | None,
) -> AsyncIterator[bytes]:
    """Every event after ``after`` (at most ``total``), a keyset page per query, one line each.

    The next page is read (in a thread, on a pooled connection) while the current one is
    sent: at most two pages are held, whatever the length of the export.
    """
    state = request.app.state
    mapper = state.daybook.mapper
    sent = 0

    def chunk(after: int, size: int) -> tuple[bytes, int, int]:
        with merchant_rows(state.read_pool, merchant_id) as conn:
            rows = audit_store.event_rows(conn, after, size, request_id=trace[0], causation_id=trace[1])
        lines = b"".join(audit_store.exported_line(mapper, row) for row in rows)
        return lines, len(rows), rows[-1][0] if rows else after

    def page_size() -> int:
        return limits.AUDIT_EXPORT_PAGE_SIZE if total is None else min(limits.AUDIT_EXPORT_PAGE_SIZE, total - sent)

    size = page_size()
    reading = asyncio.ensure_future(anyio.to_thread.run_sync(chunk, after, size))
    try:
        while True:
            lines, count, after = await reading
            sent += count
            more = count == size and (total is None or sent < total)
            if more:
                size = page_size()
                reading = asyncio.ensure_future(anyio.to_thread.run_sync(chunk, after, size))
            if lines:
                yield lines
            if not more:
                return
    finally:
        reading.cancel()  # the client left: a page being read is let go (its connection goes back to the pool)
