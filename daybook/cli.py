"""The ``daybook`` command line (see CONTRACT.md, "CLI")."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import click
import psycopg
import uvicorn

from adapters import merchants
from adapters.broker import make_broker
from adapters.database import connection_pool, eventsourcing_env
from adapters.logs import configure_logging
from adapters.migrate import migrate as apply_migrations
from adapters.runtime import SERVER_PARENT_PID_VARIABLE
from adapters.settings import Settings, SettingsError
from api.live_feed import DRAIN_SIGNAL
from api.scrape import MULTIPROCESS_DIR_VARIABLE
from daybook.audit_cli import audit
from daybook.audit_replay_cli import replay as audit_replay_command
from daybook.embedded import embedded_servers
from daybook.operator import cli_context
from daybook.projections_cli import rebuild_command, retry_command
from daybook.serve import serve as run_serve
from domain.application import Daybook
from domain.errors import InvalidCommandError
from domain.validation import check_text
from workers.inbox import redrive_parked
from workers.runner import run_forever

APP_FACTORY = "api.app:create_app_from_env"
GRACEFUL_SHUTDOWN_S = 10
"""How long the API's server lets requests in flight finish on SIGTERM."""
WORKER_SHUTDOWN_TIMEOUT_MS = 10_000


@contextmanager
def _daybook(database_url: str, settings: Settings) -> Iterator[Daybook]:
    app = Daybook(env=eventsourcing_env(database_url, settings, pool_size=1))
    try:
        yield app
    finally:
        app.close()


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
    if settings.api_processes > 1 and not os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        # Each scrape reaches one process: they must count together to be right.
        os.environ[MULTIPROCESS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="daybook-metrics-")
    host, port = host or settings.host, port or settings.port
    os.environ[SERVER_PARENT_PID_VARIABLE] = str(os.getpid())  # its server's workers die with it
    if settings.api_server == "uvicorn":
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=settings.api_processes,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        return
    serve_with_granian(settings, host, port)


def serve_with_granian(settings: Settings, host: str, port: int) -> None:
    """The API on granian: HTTP parsing and socket I/O in Rust.

    Measured against uvicorn (httptools, uvloop) on the order path, in alternate rounds on
    one deployment: 1.5x the orders a second and a lower p99 in every round
    (``docs/BENCHMARKS.md``, "Deployment").
    """
    from granian.constants import Interfaces, Loops  # noqa: PLC0415 - only this command needs it
    from granian.log import LogLevels  # noqa: PLC0415
    from granian.server.mp import MPServer  # noqa: PLC0415 - the processes server (granian.server.Server here)

    log_level = LogLevels.warning if settings.log_level.upper() in {"WARNING", "ERROR", "CRITICAL"} else LogLevels.info

    class DrainingServer(MPServer):
        """Tells its worker processes to close their live feeds before it stops them.

        A stopping worker waits for its open responses, up to ``workers_kill_timeout``,
        and a live feed never ends of itself: without this every stop with a client
        connected waited the whole timeout and then killed the worker.
        """

        def _stop_workers(self) -> None:
            for worker in self.wrks:
                pid = getattr(getattr(worker, "inner", None), "pid", None)
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, DRAIN_SIGNAL)
            super()._stop_workers()  # type: ignore[no-untyped-call]

    DrainingServer(
        APP_FACTORY,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=settings.api_processes,
        loop=Loops.uvloop,
        websockets=False,
        backlog=2048,
        factory=True,
        log_level=log_level,
        log_access=False,
        workers_kill_timeout=GRACEFUL_SHUTDOWN_S,
        # A process that dies (kill -9, OOM) is started again; without this granian stops
        # every other process with it and the whole API is down until its supervisor acts.
        respawn_failed_workers=True,
    ).serve()


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
        # On SIGTERM each worker process finishes its messages, for at most this long
        # (within the supervisor's grace before SIGKILL; dramatiq's default is 10 minutes).
        "--worker-shutdown-timeout",
        str(WORKER_SHUTDOWN_TIMEOUT_MS),
    ]
    # An idle dramatiq consumer polls its queue every worker_timeout ms (default 1,000):
    # 100 ms keeps a webhook's end-to-end latency low for little idle cost.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    # A consumer that holds its prefetch (dramatiq's default: twice the threads) stops
    # fetching and backs off. Measured under webhook load with 8 threads: the threads sat
    # idle 65 % of the time waiting for a message; raising the prefetch alone took end to
    # end p50 from 2.5-3.7 s to 1.4 s. (Later samples of the Redis queue showed it nearly
    # empty: since then the limit is the workers' group committer, not the queue.)
    os.environ.setdefault("dramatiq_queue_prefetch", str(settings.worker_threads * 8))
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
    with _servers(settings) as (database_url, _):
        apply_migrations(database_url)
        with _daybook(database_url, settings) as app, psycopg.connect(database_url, autocommit=True) as conn:
            created = merchants.create_merchant(conn, app, name, cli_context())
    click.echo(json.dumps(created.as_json(), indent=2))


@admin.command("revoke-key")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke the merchant or auditor key KEY_ID (the part after "dbk_", before the next "_")."""
    settings = _settings()
    with _servers(settings) as (database_url, _):
        apply_migrations(database_url)
        with _daybook(database_url, settings) as app, psycopg.connect(database_url, autocommit=True) as conn:
            revoked = merchants.revoke_key(conn, app, key_id, cli_context())
    if revoked is None:
        raise click.ClickException(f"no active key {key_id!r}")
    click.echo(f"revoked {revoked.role} key {revoked.key_id} of merchant {revoked.merchant_id}")


main.add_command(audit)
audit.add_command(audit_replay_command)


@main.group()
def inbox() -> None:
    """The webhook inbox."""


@inbox.command("redrive")
@click.option("--merchant", "merchant_id", type=click.UUID, default=None, help="Only this merchant's parked rows.")
@click.option("--reason", default=None, help="Why they are re-driven (recorded with the re-drive in the audit log).")
def redrive(merchant_id: uuid.UUID | None, reason: str | None) -> None:
    """Re-queue parked webhook rows (all merchants', or one's) for the workers."""
    try:
        check_text("reason", reason, required=False)
    except InvalidCommandError as error:
        raise click.BadParameter(error.reason, param_hint="--reason") from None
    settings = _settings()
    with _servers(settings) as (database_url, redis_url):
        apply_migrations(database_url)
        pool = connection_pool(database_url, settings, size=1, name="cli")
        broker = make_broker(redis_url)
        try:
            with _daybook(database_url, settings) as app:
                done = redrive_parked(pool, broker, app, merchant_id=merchant_id, context=cli_context(), reason=reason)
        finally:
            broker.close()
            pool.close()
    click.echo(f"re-queued {done.rows} parked rows")
    for owner, inbox_ids in sorted(done.rows_by_merchant.items(), key=lambda item: str(item[0])):
        click.echo(f"  merchant {owner}: {len(inbox_ids)}")


if __name__ == "__main__":
    main()
