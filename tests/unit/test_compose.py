"""docker-compose.yml cannot run here (no Docker engine), so its shape is checked."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from daybook.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, dict[str, object]]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, dict[str, object]] = document["services"]
    return services


def _is_daybook_subcommand(words: list[str]) -> bool:
    assert words[0] == "daybook", words
    group: click.Command = main
    for word in words[1:]:
        if word.startswith("-"):
            break
        if not isinstance(group, click.Group) or word not in group.commands:
            return False
        group = group.commands[word]
    return group is not main


def test_every_daybook_service_runs_a_real_daybook_subcommand() -> None:
    services = _compose()
    daybook_services = {name for name, s in services.items() if "build" in s}
    assert daybook_services == {"migrate", "api", "worker", "projections"}
    for name in daybook_services:
        command = services[name]["command"]
        assert isinstance(command, list)
        assert _is_daybook_subcommand([str(w) for w in command]), (name, command)


def test_servers_have_healthchecks_and_the_parts_wait_for_them() -> None:
    services = _compose()
    assert "pg_isready -h 127.0.0.1" in " ".join(services["postgres"]["healthcheck"]["test"])  # type: ignore[index]
    assert services["postgres"]["image"] == "postgres:16"
    assert "--appendonly" in services["redis"]["command"]  # type: ignore[operator]
    for name in ("api", "worker", "projections"):
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}  # type: ignore[index]
        assert depends["redis"] == {"condition": "service_healthy"}  # type: ignore[index]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}  # type: ignore[index]


def test_a_word_that_is_not_a_subcommand_is_caught() -> None:
    assert not _is_daybook_subcommand(["daybook", "frobnicate"])
    assert _is_daybook_subcommand(["daybook", "admin", "create-merchant", "--name", "x"])
