-- Idempotency keys of merchant POSTs: the stored answer is replayed for 24 h.
CREATE TABLE idempotency_keys (
    merchant_id uuid NOT NULL,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_sha256 bytea NOT NULL,
    state text NOT NULL CHECK (state IN ('running', 'done')),
    status_code int,
    headers jsonb,
    body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, idempotency_key)
);

-- The purge job deletes keys past their 24 h in created_at order.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
