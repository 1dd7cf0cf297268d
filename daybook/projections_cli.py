"""``daybook projections rebuild NAME`` and ``daybook projections retry NAME [POSITION]``."""

from __future__ import annotations

import sys

import click
import psycopg
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from daybook.embedded import embedded_servers
from daybook.operator import cli_context
from domain.application import Daybook
from projections.rebuild import RebuildInProgressError, rebuild
from projections.registry import projection_named, projection_names
from projections.retry import retry_quarantined
from projections.runner import Projection
from projections.state import AggregateStateProjection


def _projection(app: Daybook, name: str) -> Projection:
    try:
        return projection_named(app, name)
    except KeyError:
        known = ", ".join(projection_names())
        raise click.BadParameter(f"no projection {name!r} (known: {known})", param_hint="NAME") from None


@click.command("rebuild")
@click.argument("name")
@click.option("--restart", is_flag=True, help="Start over instead of resuming an interrupted rebuild.")
def rebuild_command(name: str, restart: bool) -> None:
    """Rebuild NAME into a fresh table from position 0, then swap it in (reads go on meanwhile)."""
    settings = Settings.from_env()
    with embedded_servers(settings.home, database_url=settings.database_url, redis_url=settings.redis_url) as (
        database_url,
        _,
    ):
        app = Daybook(env=eventsourcing_env(database_url, settings))
        projection = _projection(app, name)
        if not isinstance(projection, AggregateStateProjection):
            raise click.BadParameter(f"{name} is not rebuilt into a table", param_hint="NAME")
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[done]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(f"rebuild {name}", total=None, done="starting")
            first: list[int] = []

            def report(position: int, head: int) -> None:
                first[:] = first or [position]
                elapsed = bar.tasks[task].elapsed or 0.0
                rate = (position - first[0]) / elapsed if elapsed > 0 else 0.0
                done = f"{position:,}/{head:,} events, {rate:,.0f} events/s"
                bar.update(task, completed=position, total=max(head, position), done=done)

            try:
                done = rebuild(app, database_url, projection, context=cli_context(), restart=restart, progress=report)
            except RebuildInProgressError as error:
                raise click.ClickException(str(error)) from None
            finally:
                app.close()
    rate = done.events / done.seconds if done.seconds else 0.0
    click.echo(
        f"rebuilt {name}: {done.events:,} events in {done.seconds:.1f} s ({rate:,.0f} events/s), at {done.position}"
    )


@click.command("retry")
@click.argument("name")
@click.argument("position", type=click.IntRange(min=0), default=0)
def retry_command(name: str, position: int) -> None:
    """Apply again the events NAME quarantined (from POSITION on), once their cause is fixed."""
    settings = Settings.from_env()
    with embedded_servers(settings.home, database_url=settings.database_url, redis_url=settings.redis_url) as (
        database_url,
        _,
    ):
        app = Daybook(env=eventsourcing_env(database_url, settings))
        try:
            projection = _projection(app, name)
            with psycopg.connect(database_url, autocommit=True) as conn:
                report = retry_quarantined(conn, projection, position)
        finally:
            app.close()
    for entry in report.released:
        click.echo(f"released {entry.quarantine_key} (quarantined at {entry.position}: {entry.error})")
    for entry, error in report.still_failing:
        click.echo(f"still failing {entry.quarantine_key} (quarantined at {entry.position}): {error}", err=True)
    counts = f"{len(report.released)} released, {len(report.still_failing)} still quarantined"
    click.echo(f"{counts}; {name} is at {report.position}")
    if report.still_failing:
        sys.exit(1)
