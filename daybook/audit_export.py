"""The database side of ``daybook audit export``: keyset pages of the merchant's chain, appended to a file."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from adapters import audit_store
from adapters.database import eventsourcing_env
from adapters.settings import Settings
from daybook.embedded import embedded_servers
from daybook.home import write_private
from domain.application import Daybook

EXPORT_BATCH_SIZE = 5_000
_DIGEST_WITHIN = (
    "SELECT merchant_id, position, hash, signed_at, signature, public_key FROM audit_digests "
    "WHERE merchant_id = %s AND position <= %s ORDER BY position DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What an export wrote."""

    events: int
    last_position: int
    events_per_second: float
    digest_position: int | None


def export(merchant_id: uuid.UUID, out: Path, after: int, digest_out: Path | None) -> ExportReport:
    """Appends the merchant's chained events after ``after``, up to the chain's head when it starts."""
    settings = Settings.from_env()
    with embedded_servers(settings.home, database_url=settings.database_url, redis_url=settings.redis_url) as (
        database_url,
        _,
    ):
        app = Daybook(env=eventsourcing_env(database_url, settings))
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                return _export(app, conn, merchant_id, out, after=after, digest_out=digest_out)
        finally:
            app.close()


def progress_bar() -> Progress:
    """The export's progress bar (positions; events/s and ETA)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[done]}"),
        TimeRemainingColumn(),
        transient=False,
    )


def _export(
    app: Daybook,
    conn: psycopg.Connection[Any],
    merchant_id: uuid.UUID,
    out: Path,
    *,
    after: int,
    digest_out: Path | None,
) -> ExportReport:
    head, _ = audit_store.chain_head(conn, merchant_id)
    started, written, position = time.monotonic(), 0, after

    def page(after: int) -> list[audit_store.Row]:
        with audit_store.merchant_scope(conn, merchant_id):
            rows = audit_store.event_rows(conn, after, EXPORT_BATCH_SIZE)
        return [row for row in rows if row[0] <= head]

    # The next page is read (PostgreSQL working, the rows parsed) while this one is written.
    with progress_bar() as bar, out.open("ab") as file, ThreadPoolExecutor(1, "export-reader") as reader:
        task = bar.add_task(f"export {merchant_id}", total=max(head, 1), completed=after, done="")
        reading = reader.submit(page, position) if position < head else None
        while reading is not None:
            rows = reading.result()
            if not rows:
                break
            written, position = written + len(rows), rows[-1][0]
            reading = reader.submit(page, position) if position < head else None
            file.write(b"".join(audit_store.exported_line(app.mapper, row) for row in rows))
            rate = written / max(time.monotonic() - started, 1e-9)
            bar.update(task, completed=position, done=f"{written:,} events, {rate:,.0f} events/s")
        bar.update(task, completed=max(head, 1))
    digest_position = None
    if digest_out is not None:
        row = conn.execute(_DIGEST_WITHIN, (merchant_id, position)).fetchone()
        if row is not None:
            digest = audit_store.digest_json(row)
            write_private(digest_out, json.dumps(digest, indent=2) + "\n")
            digest_position = digest["position"]
    elapsed = max(time.monotonic() - started, 1e-9)
    return ExportReport(written, position, written / elapsed, digest_position)
