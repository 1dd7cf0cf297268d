"""The live feed's fan-out: whom the hub's frames reach, and when a subscriber must stop."""

from __future__ import annotations

import asyncio
import uuid

from adapters.settings import Settings
from api.live_feed import FeedHub, Frame

MERCHANT_A = uuid.UUID(int=1)
MERCHANT_B = uuid.UUID(int=2)


def _hub(buffer_events_max: int = 10) -> FeedHub:
    return FeedHub("postgresql://unused", Settings(sse_buffer_events_max=buffer_events_max), mapper=None)


def _frames(merchant_id: uuid.UUID, *positions: int) -> list[Frame]:
    return [Frame(position, merchant_id, b"id: %d\n\n" % position) for position in positions]


def test_frames_reach_only_the_subscribers_of_their_merchant() -> None:
    async def run() -> None:
        hub = _hub()
        a, b = hub.subscribe(MERCHANT_A), hub.subscribe(MERCHANT_B)
        hub.deliver([*_frames(MERCHANT_A, 1, 3), *_frames(MERCHANT_B, 2)], frozenset({MERCHANT_A, MERCHANT_B}), 3)
        assert [frame.position for frame in a.frames] == [1, 3]
        assert [frame.position for frame in b.frames] == [2]
        assert hub.cursor == 3

    asyncio.run(run())


def test_a_subscriber_the_reader_did_not_render_for_reads_the_range_itself() -> None:
    async def run() -> None:
        hub = _hub()
        late = hub.subscribe(MERCHANT_B)
        hub.deliver(_frames(MERCHANT_A, 1), frozenset({MERCHANT_A}), 5)
        assert late.resync
        assert not late.frames
        assert late.wake.is_set()
        assert hub.cursor == 5

    asyncio.run(run())


def test_a_subscriber_that_does_not_keep_up_is_closed_with_a_reason_and_holds_nothing() -> None:
    async def run() -> None:
        hub = _hub(buffer_events_max=3)
        slow = hub.subscribe(MERCHANT_A)
        everyone = frozenset({MERCHANT_A})
        hub.deliver(_frames(MERCHANT_A, 1, 2, 3), everyone, 3)
        hub.deliver(_frames(MERCHANT_A, 4), everyone, 4)
        assert slow.closed is None
        hub.deliver(_frames(MERCHANT_A, 5), everyone, 5)
        assert slow.closed is not None
        assert "Last-Event-ID" in slow.closed
        assert not slow.frames

    asyncio.run(run())


def test_an_unsubscribed_client_gets_nothing_more() -> None:
    async def run() -> None:
        hub = _hub()
        gone = hub.subscribe(MERCHANT_A)
        hub.unsubscribe(gone)
        hub.deliver(_frames(MERCHANT_A, 1), frozenset({MERCHANT_A}), 1)
        assert not gone.frames
        assert hub.connections == 0

    asyncio.run(run())


def test_stopping_the_hub_closes_every_stream_with_a_reason() -> None:
    async def run() -> None:
        hub = _hub()
        subscribers = [hub.subscribe(MERCHANT_A), hub.subscribe(MERCHANT_B)]
        hub.stop()
        assert all(subscriber.closed and "shutting down" in subscriber.closed for subscriber in subscribers)

    asyncio.run(run())
