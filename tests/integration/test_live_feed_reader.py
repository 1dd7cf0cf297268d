"""The live feed's reader reads only the followed merchants' events, page by page, and moves to the head."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from adapters.settings import Settings
from api import live_feed
from api.live_feed import FeedHub, Frame
from domain.application import Daybook
from domain.commands import ReceiveStock
from domain.context import CommandContext
from tests.integration.serving import wait_for

pytestmark = pytest.mark.usefixtures("projections_running")

CONTEXT = CommandContext(actor="test", request_id="live-feed-reader")


def _chained(database_url: str, merchant_id: uuid.UUID | None = None) -> list[int]:
    with psycopg.connect(database_url) as conn:
        if merchant_id is None:
            rows = conn.execute("SELECT position FROM audit_chain ORDER BY position").fetchall()
        else:
            query = "SELECT position FROM audit_chain WHERE merchant_id = %s ORDER BY position"
            rows = conn.execute(query, (merchant_id,)).fetchall()
    return [row[0] for row in rows]


class _Recorded(FeedHub):
    """The reader with its hand-overs to the event loop noted instead (there is no loop here)."""

    def __init__(self, database_url: str, daybook: Daybook) -> None:
        super().__init__(database_url, Settings(), daybook.mapper)
        self.handed: list[tuple[list[Frame], frozenset[uuid.UUID], int]] = []

    def _call(self, function: Any, *arguments: Any) -> None:
        self.handed.append(arguments)


def test_the_reader_hands_over_every_followed_event_in_pages_and_nothing_else(
    database_url: str, daybook: Daybook, monkeypatch: pytest.MonkeyPatch
) -> None:
    followed, neighbour = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(database_url) as conn:
        start = conn.execute("SELECT coalesce(max(position), 0) FROM audit_chain").fetchone()[0]  # type: ignore[index]
    for n in range(7):  # two events each: the SKU's creation and its receipt
        daybook.execute(ReceiveStock(CONTEXT, followed, f"READ-{n}", 1))
        daybook.execute(ReceiveStock(CONTEXT, neighbour, f"READ-{n}", 1))
    wait_for(lambda: len(_chained(database_url, neighbour)) == 14, timeout_s=30, what="the events to be chained")
    monkeypatch.setattr(live_feed, "PAGE_SIZE", 3)
    hub = _Recorded(database_url, daybook)
    hub._followed = frozenset({followed})

    with psycopg.connect(database_url, autocommit=True) as conn:
        reached = hub._read_after(conn, start)

    head = _chained(database_url)[-1]
    assert reached == head
    frames = [frame for handed in hub.handed for frame in handed[0]]
    assert [frame.position for frame in frames] == [p for p in _chained(database_url, followed) if p > start]
    assert {frame.merchant_id for frame in frames} == {followed}
    assert len(frames) == 14
    # Full pages end at their last row; the short one at the head.
    assert [len(handed[0]) for handed in hub.handed] == [3, 3, 3, 3, 2]
    assert [handed[2] for handed in hub.handed] == [frames[i].position for i in (2, 5, 8, 11)] + [head]


def test_with_nobody_followed_the_reader_only_moves_to_the_head(database_url: str, daybook: Daybook) -> None:
    daybook.execute(ReceiveStock(CONTEXT, uuid.uuid4(), "READ-NOBODY", 1))
    wait_for(lambda: _chained(database_url), timeout_s=30, what="an event to be chained")
    hub = _Recorded(database_url, daybook)

    with psycopg.connect(database_url, autocommit=True) as conn:
        reached = hub._read_after(conn, 0)
        again = hub._read_after(conn, reached)

    assert reached == _chained(database_url)[-1] == again
    assert hub.handed == [([], frozenset(), reached)]
