"""``daybook audit replay --merchant ID``: the merchant's aggregates replayed against the read models.

Exit 0 when every row is what the events say, 1 when any differs (a table names each
row and column), 2 for a usage error.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import click
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from adapters.database import eventsourcing_env
from adapters.settings import Settings, SettingsError
from daybook.embedded import embedded_servers
from domain.application import Daybook
from projections.audit_replay import ReplayReport, replay_merchant

VALUE_WIDTH_MAX = 80
"""Characters of a value shown in the table (the rest is cut)."""


@click.command("replay")
@click.option("--merchant", "merchant_id", type=click.UUID, required=True, help="The merchant whose books to replay.")
def replay(merchant_id: uuid.UUID) -> None:
    """Rebuild MERCHANT's orders, inventory items and payments from events; report any read-model row that differs."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from error
    console = Console(stderr=True)
    with embedded_servers(settings.home, database_url=settings.database_url, redis_url=settings.redis_url) as (
        database_url,
        _,
    ):
        app = Daybook(env=eventsourcing_env(database_url, settings, pool_size=1))
        try:
            with psycopg.connect(database_url, autocommit=True) as conn, _progress(console) as bar:
                task = bar.add_task("replay", total=None)
                report = replay_merchant(
                    app, conn, merchant_id, progress=lambda done, head: bar.update(task, completed=done, total=head)
                )
        finally:
            app.close()
    _print(report)
    sys.exit(0 if report.consistent else 1)


def _progress(console: Console) -> Progress:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True)


def _print(report: ReplayReport) -> None:
    console = Console(width=200)
    compared = ", ".join(f"{count} {name}" for name, count in report.aggregates.items())
    console.print(f"merchant {report.merchant_id}: replayed {compared}")
    held = {name: count for name, count in report.quarantined.items() if count}
    if held:
        console.print(
            "not compared (quarantined by their projection): " + ", ".join(f"{n} {k}" for k, n in held.items())
        )
    if report.consistent:
        console.print("every read-model row equals its events")
        return
    table = Table(title=f"{report.differences_total} differences between the read models and the events")
    for heading in ("read model", "aggregate", "column", "read model has", "events say"):
        table.add_column(heading, overflow="fold")
    for difference in report.differences:
        table.add_row(
            difference.projection,
            str(difference.key),
            difference.column,
            _shown(difference.actual, whole_row=difference.column == "(row)"),
            _shown(difference.expected, whole_row=difference.column == "(row)"),
        )
    console.print(table)
    if report.differences_total > len(report.differences):
        console.print(f"… and {report.differences_total - len(report.differences)} more")


def _shown(value: Any, *, whole_row: bool) -> str:
    if value is None:
        return "(no row)" if whole_row else "(none)"
    if whole_row:
        return "a row"
    text = repr(value)
    return text if len(text) <= VALUE_WIDTH_MAX else text[: VALUE_WIDTH_MAX - 1] + "…"
