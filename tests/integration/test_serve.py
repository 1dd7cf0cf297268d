"""``daybook serve`` from an empty directory, as a new user runs it."""

from __future__ import annotations

import json
import signal
import subprocess
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

    wait_for(api_is_back, timeout_s=30, what="the API child to be restarted")
    log = served.log_path.read_text()
    assert "api exited with code -9; restarting" in log
