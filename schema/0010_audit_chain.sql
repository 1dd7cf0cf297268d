-- The audit hash chain: one row per chained event, keyed by its position in the event
-- store. Each merchant's events are chained in position order (projections/audit_chain.py):
--   hash = sha256(prev_hash || canonical_json(event without hash fields))
-- the first prev_hash of a merchant being 32 zero bytes. Hashes are the raw 32 bytes
-- (the API and exports write them as lower-case hex). request_id and causation_id are
-- copied from the event's metadata so that one request or one gateway event can be
-- traced to every event it caused without decoding events.
CREATE TABLE audit_chain (
    position bigint PRIMARY KEY,
    merchant_id uuid NOT NULL,
    stream_id uuid NOT NULL,
    version bigint NOT NULL,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    request_id text,
    causation_id text
);

CREATE INDEX audit_chain_merchant_idx ON audit_chain (merchant_id, position);
CREATE INDEX audit_chain_request_idx ON audit_chain (merchant_id, request_id, position);
CREATE INDEX audit_chain_causation_idx ON audit_chain (merchant_id, causation_id, position)
    WHERE causation_id IS NOT NULL;

-- The API reads as daybook_reader (schema/0041 explains the role; it is created here too
-- because this migration runs first). A chained event joined with its stored state, for
-- the merchant named by the transaction's daybook.merchant_id only: the reader may not
-- read daybook_events itself (it has no merchant column to hold a policy). A LEFT JOIN,
-- so that a chained event deleted from the store shows as a row without state.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'daybook_reader') THEN
        CREATE ROLE daybook_reader NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
GRANT daybook_reader TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO daybook_reader;

ALTER TABLE audit_chain ENABLE ROW LEVEL SECURITY;
CREATE POLICY merchant_rows ON audit_chain FOR SELECT
    USING (merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid);
GRANT SELECT ON audit_chain TO daybook_reader;

CREATE VIEW audit_events WITH (security_barrier = true) AS
    SELECT c.position, c.merchant_id, c.stream_id, c.version, c.hash, c.prev_hash, c.request_id,
           c.causation_id, e.topic, e.state
    FROM audit_chain c
    LEFT JOIN daybook_events e ON e.notification_id = c.position
    WHERE c.merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid;
GRANT SELECT ON audit_events TO daybook_reader;
