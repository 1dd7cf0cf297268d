"""The layering contract of ``make lint`` reports a forbidden import (it can fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("daybook", "api", "workers", "projections", "adapters", "domain")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def copy_of_the_tree(target: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_tree_keeps_its_layers_and_a_forbidden_import_is_reported(tmp_path: Path) -> None:
    copy_of_the_tree(tmp_path)
    kept = lint_imports(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    with (tmp_path / "domain" / "money.py").open("a") as module:
        module.write("\nimport adapters.settings  # a layer below importing one above\n")
    with (tmp_path / "api" / "pagination.py").open("a") as module:
        module.write("\nimport workers.holds  # siblings that must stay independent\n")
    with (tmp_path / "domain" / "context.py").open("a") as module:
        module.write("\nimport psycopg  # SQL in the domain\n")
    broken = lint_imports(tmp_path)
    report = broken.stdout + broken.stderr
    assert broken.returncode != 0, report
    assert "domain.money -> adapters.settings" in report
    assert "api.pagination -> workers.holds" in report
    assert "domain.context -> psycopg" in report
