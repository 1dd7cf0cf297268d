"""The ``daybook`` command line (see CONTRACT.md, "CLI")."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
import psycopg
import uvicorn

from adapters import merchants
from adapters.logs import configure_logging
from adapters.migrate import migrate as apply_migrations
from adapters.settings import Settings, SettingsError
from daybook.embedded import embedded_servers
from daybook.projections_cli import rebuild_command, retry_command
from daybook.serve import serve as run_serve
from workers.runner import run_forever


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from error


@contextmanager
def _servers(settings: Settings) -> Iterator[tuple[str, str]]:
    """The configured servers, or the embedded ones under DAYBOOK_HOME."""
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
    settings = _settings()
    configure_logging(settings.log_level)
    sys.exit(run_serve(settings, host or settings.host, port or settings.port))


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def api(host: str | None, port: int | None) -> None:
    """The HTTP API alone (needs DAYBOOK_DATABASE_URL and DAYBOOK_REDIS_URL)."""
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
    settings = _settings()
    configure_logging(settings.log_level)
    if not settings.database_url or not settings.redis_url:
        raise click.UsageError("daybook projections needs DAYBOOK_DATABASE_URL and DAYBOOK_REDIS_URL")
    sys.exit(run_forever(settings, settings.database_url, settings.redis_url))


projections.add_command(rebuild_command)
projections.add_command(retry_command)


@main.command()
def migrate() -> None:
    """Apply the schema/ migrations."""
    settings = _settings()
    with _servers(settings) as (database_url, _):
        applied = apply_migrations(database_url)
    click.echo(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@main.group()
def admin() -> None:
    """Operator commands."""


@admin.command("create-merchant")
@click.option("--name", required=True, help="The merchant's display name (1-200 chars).")
def create_merchant(name: str) -> None:
    """Create a merchant; prints the same JSON as POST /v1/admin/merchants."""
    try:
        name = merchants.merchant_name(name)
    except merchants.InvalidMerchantNameError as error:
        raise click.BadParameter(str(error), param_hint="--name") from None
    settings = _settings()
    with (
        _servers(settings) as (database_url, _),
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        apply_migrations(database_url)
        created = merchants.create_merchant(conn, name)
    click.echo(json.dumps(created.as_json(), indent=2))


if __name__ == "__main__":
    main()
