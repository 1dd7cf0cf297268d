"""``daybook api`` runs the application in its server's worker processes: they never outlive it."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.serving import ApiProcess, wait_for

pytestmark = pytest.mark.slow


def test_kill_9_of_daybook_api_takes_its_server_workers_with_it_and_the_port_serves_again(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    first = ApiProcess(database_url, redis_url, tmp_path / "first.log")
    workers = [psutil.Process(pid) for pid in first.pids() - {first.process.pid}]
    assert workers, "the server runs the application in worker processes"
    first.kill()

    def gone() -> bool:
        return not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)

    wait_for(gone, timeout_s=10, what="the server's workers to die with daybook api")
    again = ApiProcess(database_url, redis_url, tmp_path / "again.log", port=first.port)
    try:
        assert httpx.get(f"{again.base_url}/healthz", timeout=5).status_code == 200
    finally:
        again.stop()
