"""The inbox worker's code in the test process: pending rows applied through a group committer."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from adapters.database import connection_pool, eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.groupcommit import GroupCommitter
from workers.inbox import InboxReport, InboxRetryError, process_rows


class InboxDrain:
    """Processes the inbox as ``process_inbox`` does, without dramatiq."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self.database_url = database_url
        self.pool: ConnectionPool[Any] = connection_pool(database_url, settings, size=2, name="test-inbox")
        self.app = Daybook(env=eventsourcing_env(database_url, settings))
        self.committer = GroupCommitter(self.app, name="test-inbox")
        self.committer.start()

    def pending(self, merchant_id: str) -> list[int]:
        """The merchant's pending rows, oldest first."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT inbox_id FROM webhook_inbox WHERE merchant_id = %s AND state = 'pending' ORDER BY inbox_id",
                (merchant_id,),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def drain(self, merchant_id: str, *, rounds_max: int = 5) -> InboxReport:
        """Applies the merchant's pending rows (again while some fail transiently)."""
        total = InboxReport()
        for _ in range(rounds_max):
            ids = self.pending(merchant_id)
            if not ids:
                return total
            try:
                report = process_rows(self.pool, self.committer, ids)
            except InboxRetryError:
                continue
            total.processed += report.processed
            total.parked |= report.parked
        return total

    def close(self) -> None:
        """Stops the committer and closes the connections."""
        self.committer.stop()
        self.app.close()
        self.pool.close()
