"""A tiny migration runner for the ordered SQL files in ``schema/``.

Each file runs in its own transaction together with the row that records it, so a
failed migration leaves nothing half-applied. A transaction-level advisory lock makes
concurrent runs (several containers starting at once) wait for each other. Applied
files are recorded with their SHA-256; editing an applied file is refused.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg

from adapters import audit_backfill

log = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
ADVISORY_LOCK_KEY = 0x0DA7B00C

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """A migration cannot be applied, or an applied one was changed."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of ``schema/``."""

    version: str
    path: Path

    @property
    def sql(self) -> str:
        """The file's text."""
        return self.path.read_text(encoding="utf-8")

    @property
    def sha256(self) -> str:
        """The hash recorded when the file is applied."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = SCHEMA_DIR) -> list[Migration]:
    """The migrations in ``directory``, ordered by file name (``NNNN_name.sql``)."""
    return [Migration(path.stem, path) for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))]


def migrate(database_url: str, directory: Path = SCHEMA_DIR) -> list[str]:
    """Applies every migration not applied yet and returns their versions.

    Then opens the audit log of every merchant created before audit logs were kept
    (:mod:`adapters.audit_backfill`), once the tables it reads exist.
    """
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            conn.execute(_CREATE_LEDGER)
        for migration in discover(directory):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                row = conn.execute(
                    "SELECT sha256 FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if row is not None:
                    if row[0] != migration.sha256:
                        msg = f"migration {migration.version} changed after it was applied"
                        raise MigrationError(msg)
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, sha256) VALUES (%s, %s)",
                    (migration.version, migration.sha256),
                )
                applied_now.append(migration.version)
    if directory == SCHEMA_DIR:
        opened = audit_backfill.open_missing_logs(database_url)
        if opened:
            log.info("opened the audit logs of %d merchants created before them", opened)
    return applied_now
