"""``daybook api`` with several processes: one of them killed, the others keep serving and it comes back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.serving import ApiProcess, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(database_url, redis_url, tmp_path / "api.log", extra_env={"DAYBOOK_API_PROCESSES": "2"})
    yield process
    process.stop()


def _workers(api: ApiProcess) -> list[psutil.Process]:
    children = psutil.Process(api.process.pid).children()
    return [child for child in children if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in
            " ".join(child.cmdline())]  # fmt: skip


def test_a_killed_api_process_is_started_again_while_the_other_keeps_serving(api: ApiProcess) -> None:
    workers = wait_for(lambda: _workers(api) if len(_workers(api)) == 2 else None, timeout_s=60, what="2 processes")
    killed = workers[0]
    killed.send_signal(signal.SIGKILL)

    def served() -> bool:
        try:
            return httpx.get(f"{api.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(
        lambda: served() and len(_workers(api)) == 2 and killed.pid not in {w.pid for w in _workers(api)},
        timeout_s=60,
        what="the killed process to be replaced",
    )
    assert api.process.poll() is None, "the API's main process stopped with its worker"
