"""``GET /v1/events/stream``: the merchant's events as Server-Sent Events (``api/live_feed.py``).

Without ``Last-Event-ID`` a stream starts at the live head; with it, right after that
position (``0`` replays from the first event). A comment line goes out at least every
heartbeat, and a stream the server must end says why in a last comment before it closes.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
from litestar import Controller, Request, get
from litestar.response import Stream

from api.auth import merchant_only
from api.commands import merchant_of
from api.live_feed import CONNECTIONS, PAGE_SIZE, FeedHub, Frame, Subscriber, render, rows_between
from api.problems import ApiError
from api.reads import merchant_rows
from domain import limits

MEDIA_TYPE = "text/event-stream"
_DIGITS = re.compile(f"[0-9]{{1,{len(str(limits.POSITION_MAX))}}}")
_OPENED = b"retry: 1000\n: connected\n\n"
_HEARTBEAT = b": heartbeat\n\n"


def last_event_id(value: str | None) -> int | None:
    """The position to resume after, or ``None`` for the live head.

    Raises:
        ApiError: 400 for anything but ASCII digits of a position.
    """
    if value is None:
        return None
    if _DIGITS.fullmatch(value) is None or int(value) > limits.POSITION_MAX:
        raise ApiError(400, "invalid_request", f"Last-Event-ID must be a position from 0 to {limits.POSITION_MAX}.")
    return int(value)


class EventsController(Controller):
    """The live feed of the caller's merchant."""

    path = "/v1/events"
    tags = ["events"]

    @get("/stream", operation_id="streamEvents", opt=merchant_only)
    async def stream(self, request: Request[Any, Any, Any]) -> Stream:
        """Every event of the merchant as it is chained, resumable with ``Last-Event-ID``."""
        state = request.app.state
        merchant_id = merchant_of(request)
        after = last_event_id(request.headers.get("last-event-id"))
        hub: FeedHub = state.feed_hub
        if hub.draining:
            raise ApiError(
                503, "overloaded", "This API process is shutting down; reconnect.", headers={"Retry-After": "1"}
            )
        if hub.connections >= state.settings.sse_connections_process_max:
            raise ApiError(
                503, "overloaded", "This API process serves its most live feeds; retry.", headers={"Retry-After": "1"}
            )
        slot = await state.feed_slots.take(merchant_id)
        if slot is None:
            raise ApiError(
                429,
                "rate_limited",
                f"The merchant holds {state.feed_slots.per_merchant_max} live feed connections already.",
                headers={"Retry-After": "5"},
            )
        feed = _Feed(state, merchant_id, slot, hub.cursor if after is None else after)
        return Stream(
            feed.frames(),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


class _Feed:
    """One client's stream: catch up from the database, then follow the hub."""

    def __init__(self, state: Any, merchant_id: uuid.UUID, slot: str, after: int) -> None:
        self._state = state
        self._hub: FeedHub = state.feed_hub
        self._merchant_id = merchant_id
        self._slot = slot
        self._sent = after
        self._heartbeat_seconds: float = state.settings.sse_heartbeat_seconds

    async def frames(self) -> AsyncIterator[bytes]:
        subscriber: Subscriber | None = None
        CONNECTIONS.inc()
        try:
            yield _OPENED
            while True:
                async for data in self._catch_up():
                    yield data
                # No await from the check in _catch_up to here: the hub hands over everything after _sent.
                subscriber = self._hub.subscribe(self._merchant_id)
                async for data in self._follow(subscriber):
                    yield data
                if subscriber.closed is not None:
                    yield b": closed: %s\n\n" % subscriber.closed.encode()
                    return
                self._hub.unsubscribe(subscriber)
                subscriber = None
        finally:
            CONNECTIONS.dec()
            if subscriber is not None:
                self._hub.unsubscribe(subscriber)
            # The stream is being cancelled when its client left: give the slot back anyway.
            with anyio.CancelScope(shield=True):
                await self._state.feed_slots.give_back(self._merchant_id, self._slot)

    async def _catch_up(self) -> AsyncIterator[bytes]:
        """The merchant's chained events after ``_sent`` up to the hub's cursor, from the database."""
        while self._sent < self._hub.cursor:
            until = self._hub.cursor
            frames = await anyio.to_thread.run_sync(self._read, self._sent, until)
            for frame in frames:
                yield frame.data
                self._sent = frame.position
            if len(frames) < PAGE_SIZE:
                self._sent = max(self._sent, until)

    def _read(self, after: int, until: int) -> list[Frame]:
        mapper = self._state.daybook.mapper
        with merchant_rows(self._state.read_pool, self._merchant_id) as conn:
            return [render(row, mapper) for row in rows_between(conn, self._merchant_id, after, until)]

    async def _follow(self, subscriber: Subscriber) -> AsyncIterator[bytes]:
        """The hub's frames; returns to catch up on a resync, or when the subscriber is closed."""
        while subscriber.closed is None:
            while subscriber.frames:
                frame = subscriber.frames.popleft()
                if frame.position > self._sent:
                    yield frame.data
                    self._sent = frame.position
            if subscriber.resync:
                return
            subscriber.wake.clear()
            try:
                await asyncio.wait_for(subscriber.wake.wait(), self._heartbeat_seconds)
            except TimeoutError:
                yield _HEARTBEAT
                await self._state.feed_slots.renew(self._merchant_id, self._slot)
