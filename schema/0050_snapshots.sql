-- Snapshots of long-lived aggregates (domain/snapshots/): the state of one aggregate
-- exactly at originator_version, encoded by the application's mapper like an event.
-- Loads read the latest snapshot at or before the version they need and only the
-- events after it, so a cold load of a SKU with millions of events stays short. The
-- events table is untouched: snapshots are derived data, written after the events they
-- reflect have committed, and any of them may be missing.
--
-- timestamp_max is the latest timestamp among the events 1..originator_version: an
-- as_of read uses a snapshot only when every event it reflects occurred by then. It
-- never decreases as the version grows, so "latest snapshot with timestamp_max <= t"
-- is served by the second index.
CREATE TABLE public.daybook_snapshots (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    timestamp_max timestamptz NOT NULL,
    topic text NOT NULL,
    state bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (originator_id, originator_version)
);

CREATE INDEX daybook_snapshots_as_of_idx
    ON public.daybook_snapshots (originator_id, timestamp_max, originator_version);
