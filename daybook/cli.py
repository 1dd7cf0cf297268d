"""The ``daybook`` command line (see CONTRACT.md, "CLI")."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from daybook.logs import configure_logging
from daybook.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from error


@contextmanager
def _servers(settings: Settings) -> Iterator[tuple[str, str]]:
    """The configured servers, or the embedded ones under DAYBOOK_HOME."""
    from daybook.embedded import embedded_servers

    with embedded_servers(settings.home, database_url=settings.database_url, redis_url=settings.redis_url) as urls:
        yield urls


@click.group()
def main() -> None:
    """Daybook: an event-sourced financial core for commerce."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on (DAYBOOK_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (DAYBOOK_PORT, default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """API, workers, projections and scheduler together (embedded servers if none configured)."""
    from daybook.serve import serve as run_serve

    settings = _settings()
    configure_logging(settings.log_level)
    sys.exit(run_serve(settings, host or settings.host, port or settings.port))


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def api(host: str | None, port: int | None) -> None:
    """The HTTP API alone (needs DAYBOOK_DATABASE_URL and DAYBOOK_REDIS_URL)."""
    import uvicorn

    settings = _settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        "api.app:create_app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=settings.api_processes,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@main.command()
def worker() -> None:
    """The dramatiq workers alone (needs DAYBOOK_REDIS_URL and DAYBOOK_DATABASE_URL)."""
    settings = _settings()
    if not settings.redis_url:
        raise click.UsageError("daybook worker needs DAYBOOK_REDIS_URL")
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.tasks",
        "--processes",
        str(settings.worker_processes),
        "--threads",
        str(settings.worker_threads),
    ]
    # An idle dramatiq consumer polls its queue every worker_timeout ms (default 1,000):
    # 100 ms keeps a webhook's end-to-end latency low for little idle cost.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    os.execv(sys.executable, argv)  # noqa: S606 - replaces this process; signals reach dramatiq


@main.group(invoke_without_command=True)
@click.pass_context
def projections(context: click.Context) -> None:
    """The projection runner and scheduler alone (or a subcommand)."""
    if context.invoked_subcommand is not None:
        return
    from workers.runner import run_forever

    settings = _settings()
    configure_logging(settings.log_level)
    if not settings.database_url or not settings.redis_url:
        raise click.UsageError("daybook projections needs DAYBOOK_DATABASE_URL and DAYBOOK_REDIS_URL")
    sys.exit(run_forever(settings, settings.database_url, settings.redis_url))


@main.command()
def migrate() -> None:
    """Apply the schema/ migrations."""
    from daybook.migrate import migrate as apply

    settings = _settings()
    with _servers(settings) as (database_url, _):
        applied = apply(database_url)
    click.echo(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@main.group()
def admin() -> None:
    """Operator commands."""


@admin.command("create-merchant")
@click.option("--name", required=True, help="The merchant's display name (1-200 chars).")
def create_merchant(name: str) -> None:
    """Create a merchant; prints the same JSON as POST /v1/admin/merchants."""
    import psycopg

    from api import merchant_store
    from daybook.migrate import migrate as apply

    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise click.BadParameter("must be 1-200 characters", param_hint="--name")
    settings = _settings()
    with (
        _servers(settings) as (database_url, _),
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        apply(database_url)
        created = merchant_store.create_merchant(conn, name)
    click.echo(json.dumps(merchant_json(created), indent=2))


def merchant_json(created: object) -> dict[str, object]:
    """The contract's JSON for a created merchant."""
    from api.merchant_store import CreatedMerchant

    assert isinstance(created, CreatedMerchant)
    return {
        "merchant_id": str(created.merchant_id),
        "name": created.name,
        "api_key": created.api_key,
        "auditor_key": created.auditor_key,
        "webhook_secrets": created.webhook_secrets,
    }


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` readable by its owner only (mode 600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


if __name__ == "__main__":
    main()
