-- Where GET /v1/audit/verify stands for each merchant (adapters/audit_verification.py).
-- Each call checks a bounded number of chained events: forward from `position` (the
-- chain verified so far, whose hash there is `hash`), then re-checks older ones from
-- `sweep_position` (wrapping to the genesis once it reaches `position`), so a change
-- anywhere is found within (chain length / budget) calls. A mismatch found is kept and
-- checked first by every later call.
CREATE TABLE audit_verification (
    merchant_id uuid PRIMARY KEY,
    position bigint NOT NULL,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    sweep_position bigint NOT NULL,
    sweep_hash bytea NOT NULL CHECK (length(sweep_hash) = 32),
    mismatch_position bigint,
    mismatch_reason text CHECK (length(mismatch_reason) <= 2000),
    verified_at timestamptz NOT NULL DEFAULT now()
);

-- GET /v1/audit/streams/{stream_id}/events reads one stream's chained events in version order.
CREATE INDEX audit_chain_stream_idx ON audit_chain (stream_id, version);
