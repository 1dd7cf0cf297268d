-- Merchants, their API keys (only SHA-256 hashes are stored) and webhook secrets.

CREATE TABLE merchants (
    merchant_id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id text PRIMARY KEY,
    merchant_id uuid NOT NULL REFERENCES merchants (merchant_id),
    role text NOT NULL CHECK (role IN ('merchant', 'auditor')),
    secret_sha256 bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX api_keys_merchant_idx ON api_keys (merchant_id);

-- Webhook secrets must be usable to compute HMACs, so they are stored as given.
-- A rotated-out secret keeps working until expires_at (24 h after rotation).
CREATE TABLE webhook_secrets (
    merchant_id uuid NOT NULL REFERENCES merchants (merchant_id),
    gateway text NOT NULL CHECK (gateway IN ('stripe', 'standard')),
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    PRIMARY KEY (merchant_id, gateway, secret)
);
