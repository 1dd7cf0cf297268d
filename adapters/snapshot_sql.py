"""The statements of the snapshots table (``schema/0050_snapshots.sql``), built once per recorder.

Reading an aggregate's latest snapshot and the events after it is one statement, so a
cold load costs one round trip, as a load without snapshots did.
"""

from __future__ import annotations

from typing import Any

from psycopg.sql import SQL, Identifier

VERSION_MAX = 2**63 - 1
"""No version is above this (``bigint``): a read up to it reads every event."""


def table_name(events_table_name: str) -> str:
    """``daybook_events`` → ``daybook_snapshots`` (the library's naming of a snapshot store)."""
    return events_table_name.removesuffix("_events") + "_snapshots"


def select_with_snapshots(table: dict[str, Identifier], snapshots: dict[str, Identifier], *, as_of: bool) -> Any:
    """Each wanted aggregate's snapshot (if any), then its events after it.

    The snapshot is the latest at or before ``%(version_max)s``, or with ``as_of`` the
    latest whose events all occurred by ``%(timestamp_max)s``. An ``as_of`` read also
    stops at the first snapshot that reflects a later event: the history had not gone
    past that version by then, so no event after it is needed.
    """
    if as_of:
        pick = SQL("s.timestamp_max <= %(timestamp_max)s ORDER BY s.timestamp_max DESC, s.originator_version DESC")
        stop = SQL(
            ", stop AS MATERIALIZED ("
            "  SELECT w.originator_id, s.originator_version FROM wanted AS w "
            "  CROSS JOIN LATERAL (SELECT s.originator_version FROM {schema}.{snapshots} AS s "
            "    WHERE s.originator_id = w.originator_id AND s.timestamp_max > %(timestamp_max)s "
            "    ORDER BY s.timestamp_max, s.originator_version LIMIT 1) AS s) "
        )
        stop_join = SQL("LEFT JOIN stop USING (originator_id) ")
        version_max = SQL("least(stop.originator_version, %(version_max)s)")  # least() skips NULL
    else:
        pick = SQL("s.originator_version <= %(version_max)s ORDER BY s.originator_version DESC")
        stop, stop_join, version_max = SQL(""), SQL(""), SQL("%(version_max)s")
    return SQL(
        "WITH wanted AS (SELECT DISTINCT unnest(%(ids)s::uuid[]) AS originator_id), "
        "snap AS MATERIALIZED ("
        "  SELECT w.originator_id, s.originator_version, s.topic, s.state FROM wanted AS w "
        "  CROSS JOIN LATERAL (SELECT s.originator_version, s.topic, s.state FROM {schema}.{snapshots} AS s "
        "    WHERE s.originator_id = w.originator_id AND {pick} LIMIT 1) AS s) "
        "{stop}"
        "SELECT originator_id, originator_version, topic, state, TRUE AS snapshot FROM snap "
        "UNION ALL "
        "SELECT e.originator_id, e.originator_version, e.topic, e.state, FALSE FROM wanted AS w "
        "LEFT JOIN snap USING (originator_id) {stop_join}"
        "JOIN {schema}.{table} AS e ON e.originator_id = w.originator_id "
        "  AND e.originator_version > coalesce(snap.originator_version, 0) "
        "  AND e.originator_version <= {version_max} "
        "ORDER BY originator_id, originator_version"
    ).format(
        schema=table["schema"],
        table=table["table"],
        snapshots=snapshots["table"],
        pick=pick,
        stop=stop.format(schema=table["schema"], snapshots=snapshots["table"]),
        stop_join=stop_join,
        version_max=version_max,
    )


def insert(snapshots: dict[str, Identifier]) -> Any:
    """Stores snapshots given as five arrays; one already stored at its version is kept."""
    return SQL(
        "INSERT INTO {schema}.{table} (originator_id, originator_version, timestamp_max, topic, state) "
        "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::timestamptz[], %s::text[], %s::bytea[]) "
        "ON CONFLICT (originator_id, originator_version) DO NOTHING"
    ).format(**snapshots)
