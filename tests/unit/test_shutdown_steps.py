"""The API's shutdown steps: one that hangs or fails is named in the log and the rest go on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from api.app import shut_down


def test_a_step_that_never_finishes_is_logged_by_name_and_left_behind(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[str]:
        done: list[str] = []
        await shut_down("the stuck step", asyncio.Event().wait(), timeout_s=0.05)
        done.append("next step")
        return done

    with caplog.at_level(logging.ERROR, logger="api.app"):
        assert asyncio.run(scenario()) == ["next step"]
    assert any("the stuck step did not finish" in record.getMessage() for record in caplog.records)


def test_a_step_that_fails_is_logged_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    async def failing() -> None:
        raise ConnectionError("redis went away")

    with caplog.at_level(logging.ERROR, logger="api.app"):
        asyncio.run(shut_down("the failing step", failing(), timeout_s=1.0))
    assert any("the failing step failed" in record.getMessage() for record in caplog.records)


def test_a_step_that_finishes_in_time_is_awaited_and_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    finished = []

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.append(True)

    with caplog.at_level(logging.ERROR, logger="api.app"):
        asyncio.run(shut_down("the quick step", quick(), timeout_s=1.0))
    assert finished == [True]
    assert not caplog.records
