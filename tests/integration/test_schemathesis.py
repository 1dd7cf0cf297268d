"""Schemathesis against ``daybook api``: every check, every phase, for each kind of caller.

The API process runs on the session's PostgreSQL and Redis with the projections
following; ``st run`` loads the document from ``/schema/openapi.json`` and checks that
every answer is one the document states (status, problem code, content type, headers,
schema), that schema-valid requests are accepted and invalid ones refused, that
undeclared methods are 405 with ``Allow``, that operations declaring security refuse
requests without it, and, in the stateful phase, that the document's links hold (an
order just placed can be read, cancelled and listed by its id). Bounded by
``--max-examples`` and ``schemathesis.toml`` (see there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.serving import API_ADMIN_KEY, ROOT, ApiProcess

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("projections_running")]

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = 5


@pytest.fixture(scope="module")
def api_process(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    process = ApiProcess(database_url, redis_url, tmp_path_factory.mktemp("schemathesis") / "api.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keys(api_process: ApiProcess) -> dict[str, str | None]:
    created = api_process.create_merchant("Schemathesis merchant")
    return {"merchant": created["api_key"], "auditor": created["auditor_key"], "admin": API_ADMIN_KEY, "none": None}


@pytest.mark.parametrize("role", ["merchant", "auditor", "admin", "none"])
def test_the_api_answers_as_its_openapi_document_says(
    api_process: ApiProcess, keys: dict[str, Any], database_url: str, tmp_path: Path, role: str
) -> None:
    command = [
        str(ST),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{api_process.base_url}/schema/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--request-timeout",
        "30",
    ]
    if keys[role] is not None:
        command += ["--header", f"Authorization: Bearer {keys[role]}"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
        "DAYBOOK_SCHEMATHESIS_DATABASE_URL": database_url,
    }
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    report = done.stdout[-12000:] + done.stderr[-2000:]
    assert done.returncode == 0, f"schemathesis as {role} found failures:\n{report}"
    assert "passed" in done.stdout, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in done.stdout, f"{phase} did not pass:\n{report}"
