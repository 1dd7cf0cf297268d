"""``daybook api`` runs the application in its server's worker processes.

A killed worker is started again while the others keep serving, and the workers never
outlive ``daybook api`` itself.
"""

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


def test_kill_9_of_daybook_api_takes_its_server_workers_with_it_and_the_port_serves_again(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    first = ApiProcess(database_url, redis_url, tmp_path / "first.log")
    workers = [psutil.Process(pid) for pid in first.pids() - {first.process.pid}]
    assert workers, "the server runs the application in worker processes"
    first.process.send_signal(signal.SIGKILL)  # daybook api alone, not its process group
    first.process.wait(timeout=10)

    def gone() -> bool:
        return not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)

    wait_for(gone, timeout_s=10, what="the server's workers to die with daybook api")
    again = ApiProcess(database_url, redis_url, tmp_path / "again.log", port=first.port)
    try:
        assert httpx.get(f"{again.base_url}/healthz", timeout=5).status_code == 200
    finally:
        again.stop()
