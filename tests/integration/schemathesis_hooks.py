"""Schemathesis hooks for the suite's run against ``daybook api`` (loaded through SCHEMATHESIS_HOOKS).

A client only holds event store positions the API returned, so a generated
``X-Daybook-Min-Position`` is read as a position at most the store's last one (an
unreachable one waits out the read limit and is 503 ``projection_lagging``, which
tests/integration/test_orders_http.py checks on its own). The server's database is
named by ``DAYBOOK_SCHEMATHESIS_DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import schemathesis

HEADER = "X-Daybook-Min-Position"


def _last_position() -> int:
    with psycopg.connect(os.environ["DAYBOOK_SCHEMATHESIS_DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM daybook_events").fetchone()
    return int(row[0]) if row else 0


@schemathesis.hook
def map_headers(context: Any, headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """Positions the API could have returned: at most the last one recorded."""
    if headers and isinstance(value := headers.get(HEADER), str) and value.isascii() and value.isdigit():
        headers[HEADER] = str(min(int(value), _last_position()))
    return headers
