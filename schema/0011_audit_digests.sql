-- Where each merchant's chain stands, and its signed digests.
--
-- audit_chain_heads: one row per merchant, written by the chain projection in each
-- batch's transaction: the last chained position and hash, how many events are chained,
-- and the chain length at its latest digest (a new digest is due every
-- DAYBOOK_AUDIT_DIGEST_INTERVAL_EVENTS events or DAYBOOK_AUDIT_DIGEST_INTERVAL_SECONDS).
CREATE TABLE audit_chain_heads (
    merchant_id uuid PRIMARY KEY,
    position bigint NOT NULL,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    events bigint NOT NULL,
    digest_position bigint NOT NULL DEFAULT 0,
    digest_events bigint NOT NULL DEFAULT 0,
    digest_at timestamptz
);

-- Every digest is kept: an auditor holding an earlier one can prove nothing before it
-- changed. Ed25519 over the UTF-8 bytes of "{merchant_id}:{position}:{hash hex}"; the
-- public key is stored with each digest, so digests signed before a key change still verify.
CREATE TABLE audit_digests (
    merchant_id uuid NOT NULL,
    position bigint NOT NULL,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    signed_at timestamptz NOT NULL,
    signature bytea NOT NULL CHECK (length(signature) = 64),
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    PRIMARY KEY (merchant_id, position)
);

ALTER TABLE audit_digests ENABLE ROW LEVEL SECURITY;
CREATE POLICY merchant_rows ON audit_digests FOR SELECT
    USING (merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid);
GRANT SELECT ON audit_digests TO daybook_reader;
ALTER TABLE audit_chain_heads ENABLE ROW LEVEL SECURITY;
CREATE POLICY merchant_rows ON audit_chain_heads FOR SELECT
    USING (merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid);
GRANT SELECT ON audit_chain_heads TO daybook_reader;

-- Chains built before this migration: their heads, from the chain itself.
INSERT INTO audit_chain_heads (merchant_id, position, hash, events)
SELECT DISTINCT ON (merchant_id) merchant_id, position, hash, count(*) OVER (PARTITION BY merchant_id)
FROM audit_chain
ORDER BY merchant_id, position DESC;
