-- The last drift check of each read model: a sample of rows, each compared with its
-- aggregate replayed at the version the row shows (workers/drift.py). /metrics reports
-- the drifted count; `daybook audit replay` makes the full comparison.
CREATE TABLE read_model_checks (
    projection text PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    sampled integer NOT NULL CHECK (sampled >= 0),
    drifted integer NOT NULL CHECK (drifted >= 0 AND drifted <= sampled),
    detail text NOT NULL DEFAULT '' CHECK (length(detail) <= 2000)
);
