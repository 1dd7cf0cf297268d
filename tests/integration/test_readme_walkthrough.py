"""The README's "Calling the API" walkthrough runs as pasted against a real server."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.serving import API_ADMIN_KEY, ROOT, ApiProcess

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("projections_running")]


def walkthrough() -> str:
    """The shell block under "## Calling the API" in README.md."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"## Calling the API\n\n```sh\n(.*?)\n```", readme, re.S)
    assert found, "README.md has no shell block under '## Calling the API'"
    return found.group(1)


def test_every_body_in_the_walkthrough_is_sent_with_a_content_type() -> None:
    for command in walkthrough().split("\ncurl")[1:]:
        if " -d " in command:
            assert '-H "$JSON"' in command or "Content-Type: application/json" in command, command


def test_the_readme_walkthrough_runs_as_pasted(database_url: str, redis_url: str, tmp_path: Path) -> None:
    server = ApiProcess(database_url, redis_url, tmp_path / "api.log")
    try:
        # What `daybook serve` leaves in the directory it runs in.
        home = tmp_path / ".daybook"
        home.mkdir()
        (home / "demo-merchant.json").write_text(json.dumps(server.create_merchant("Demo merchant")))
        (home / "admin-key").write_text(API_ADMIN_KEY)
        script = walkthrough().replace("localhost:8000", f"127.0.0.1:{server.port}")
        done = subprocess.run(
            ["bash", "-e", "-u", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        server.stop()
    output = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert '{"status":"ready","reasons":[]}' in output
    assert '"name":"Acme"' in output
    order = json.loads((tmp_path / "order.json").read_text())
    assert order["status"] == "reserved"
    assert re.search(rf"order {order['id']} at position [0-9]+\n", output), output
    # The read waited for the order's position: the level already shows the held units.
    assert '"sku":"TSHIRT-M","on_hand":10,"reserved":2,"available":8' in output, output
    assert f'"id":"{order["id"]}"' in output.split("at position", 1)[1]
    assert '"status":"cancelled"' in output
    assert '"openapi":"3.0.3"' in output
