"""``daybook serve`` from an empty directory, as a new user runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from adapters.broker import make_broker, send
from tests.integration.serving import ServeProcess, free_port, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def serve_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def served(serve_dir: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(serve_dir, free_port())
    process.start()
    yield process
    process.kill_if_running()


def _demo(serve_dir: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads((serve_dir / ".daybook" / "demo-merchant.json").read_text())
    return data


def _create_merchant(served: ServeProcess, key: str) -> httpx.Response:
    return httpx.post(
        f"{served.base_url}/v1/admin/merchants",
        json={"name": "Probe"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_first_start_creates_admin_key_and_demo_merchant_files_readable_only_by_owner(
    served: ServeProcess, serve_dir: Path
) -> None:
    admin_key = serve_dir / ".daybook" / "admin-key"
    demo = serve_dir / ".daybook" / "demo-merchant.json"
    assert admin_key.stat().st_mode & 0o777 == 0o600
    assert demo.stat().st_mode & 0o777 == 0o600
    assert set(_demo(serve_dir)) == {
        "merchant_id",
        "name",
        "api_key",
        "auditor_key",
        "webhook_secrets",
    }


def test_demo_merchant_key_authenticates_but_is_forbidden_on_admin_routes(
    served: ServeProcess, serve_dir: Path
) -> None:
    response = _create_merchant(served, _demo(serve_dir)["api_key"])
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert response.headers["content-type"].startswith("application/problem+json")


def test_wrong_key_gets_401_with_a_problem_body_and_request_id(served: ServeProcess) -> None:
    response = httpx.post(
        f"{served.base_url}/v1/admin/merchants",
        json={"name": "x"},
        headers={"Authorization": "Bearer dbk_000000000000000000_nope", "X-Request-ID": "req-abc"},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert response.json()["request_id"] == "req-abc"
    assert response.headers["x-request-id"] == "req-abc"


def test_a_message_sent_to_the_broker_is_processed_by_the_served_worker(
    served: ServeProcess,
) -> None:
    url = served.redis_url()
    broker = make_broker(url)
    token = uuid.uuid4().hex
    send(broker, "ping", token)
    client = redis.Redis.from_url(url)
    wait_for(lambda: client.get(f"daybook:ping:{token}"), timeout_s=30, what="the ping actor to run")
    broker.close()


def test_metrics_of_the_worker_and_the_projections_are_served_by_the_api(served: ServeProcess, serve_dir: Path) -> None:
    """One scrape of the API speaks for every part of serve: they count into one directory."""
    demo = _demo(serve_dir)
    headers = {"Authorization": f"Bearer {demo['api_key']}", "Content-Type": "application/json"}
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    received = httpx.post(
        f"{served.base_url}/v1/inventory/{sku}/receipts", json={"quantity": 1}, headers=headers, timeout=10
    )
    assert received.status_code == 201, received.text

    def scraped() -> str | None:
        text = httpx.get(f"{served.base_url}/metrics", timeout=10).text
        wanted = (
            'daybook_projection_events_total{projection="inventory_levels"}',  # the projections process
            'daybook_worker_messages_total{actor="expire_holds",outcome="done"}',  # the worker, on its schedule
            'daybook_request_duration_seconds_count{method="POST"',  # the API itself
            'daybook_projection_lag_events{projection="orders"}',  # the database, at scrape time
        )
        return text if all(series in text for series in wanted) else None

    wait_for(scraped, timeout_s=30, what="the worker's, projections' and API's series in one scrape")
    assert (serve_dir / ".daybook" / "metrics").is_dir()


def test_sigterm_stops_everything_cleanly_and_a_restart_keeps_the_data(served: ServeProcess, serve_dir: Path) -> None:
    admin_key = (serve_dir / ".daybook" / "admin-key").read_text().strip()
    created = _create_merchant(served, admin_key)
    assert created.status_code == 201
    new_key = created.json()["api_key"]
    demo_before = _demo(serve_dir)

    assert served.stop(signal.SIGTERM) == 0
    leftovers = subprocess.run(["pgrep", "-f", str(serve_dir)], capture_output=True, text=True, check=False)
    assert leftovers.stdout.strip() == ""

    served.start()
    assert _create_merchant(served, new_key).status_code == 403  # still a known merchant key
    assert _demo(serve_dir) == demo_before  # the demo merchant is created once


def test_a_child_that_dies_is_restarted_by_the_supervisor(served: ServeProcess) -> None:
    assert served.process is not None
    children = subprocess.run(
        ["pgrep", "-P", str(served.process.pid), "-f", "daybook api"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(children) == 1
    subprocess.run(["kill", "-9", children[0]], check=True)

    def api_is_back() -> bool:
        try:
            return httpx.get(f"{served.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def restarted() -> bool:
        return "api exited with code -9; restarting" in served.log_path.read_text()

    # Its server's worker process dies with it (the supervisor kills the group), so what
    # answers afterwards is the restarted child.
    wait_for(restarted, timeout_s=30, what="the supervisor to see the API child die")
    wait_for(api_is_back, timeout_s=30, what="the API child to be restarted")
    now = subprocess.run(
        ["pgrep", "-P", str(served.process.pid), "-f", "daybook api"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(now) == 1
    assert now != children


# Issue 11, items 13 and 14.


def _lines(text: str, needle: str) -> list[int]:
    return [index for index, line in enumerate(text.splitlines()) if needle in line]


def test_serving_on_is_printed_only_once_the_api_listens(served: ServeProcess) -> None:
    log = served.log_path.read_text()
    [serving, *_] = _lines(log, "Daybook is serving on")
    listening = _lines(log, "Listening at: http://")  # granian's line once it listens
    assert listening, log[-2000:]
    assert listening[0] < serving


def test_ctrl_c_stops_the_children_gracefully_before_the_embedded_servers(served: ServeProcess) -> None:
    offset = len(served.log_path.read_text().splitlines())
    assert served.interrupt() == 0
    log = "\n".join(served.log_path.read_text().splitlines()[offset:])
    assert "CRITICAL" not in log, log[-4000:]
    assert "Killing worker process" not in log  # dramatiq's answer to a second SIGTERM
    # Graceful: granian exits 0 (uvicorn re-raises the SIGTERM it handled: -15); dramatiq exits 0 unless it
    # had to kill a worker process mid-message (3); nothing needed SIGKILL (-9).
    graceful = {"api": (0, -15), "worker": (0,), "projections": (0,)}
    for child, codes in graceful.items():
        [stopped] = _lines(log, f"{child} stopped (exit code")
        line = log.splitlines()[stopped]
        assert any(f"{child} stopped (exit code {code})" in line for code in codes), line
        assert stopped < _lines(log, "embedded redis stopped")[0] < _lines(log, "embedded postgresql stopped")[0]


def test_a_port_already_in_use_makes_serve_exit_at_once_with_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYBOOK_")}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "daybook", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "serving on" not in result.stdout + result.stderr
    assert not (tmp_path / ".daybook" / "pg").exists()  # nothing was started
