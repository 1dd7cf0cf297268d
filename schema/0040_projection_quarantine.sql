-- Events a projection could not apply, kept aside so that the projection goes on past
-- them (for that projection only). `quarantine_key` is what the projection sets aside
-- with the event: the aggregate for the row-per-aggregate read models, so its later
-- events are skipped too and reads of it are replayed from the event store instead.
-- `daybook projections retry NAME [POSITION]` re-applies them once the cause is fixed.
CREATE TABLE projection_quarantine (
    projection text NOT NULL,
    quarantine_key uuid NOT NULL,
    merchant_id uuid,
    position bigint NOT NULL,
    error text NOT NULL CHECK (length(error) <= 2000),
    events_skipped bigint NOT NULL DEFAULT 0,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, quarantine_key)
);

CREATE INDEX projection_quarantine_merchant_idx ON projection_quarantine (projection, merchant_id);
