-- The webhook inbox: every verified gateway delivery, stored before it is acknowledged.
-- The unique key (merchant, gateway, gateway event id) is the truth for deduplication;
-- Redis only remembers what this table already holds. Rows are processed by the
-- dramatiq workers and never deleted by the application (the raw body is evidence).
CREATE TABLE webhook_inbox (
    inbox_id bigserial PRIMARY KEY,
    merchant_id uuid NOT NULL REFERENCES merchants (merchant_id),
    gateway text NOT NULL CHECK (gateway IN ('stripe', 'standard')),
    event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    -- The body exactly as received and verified, and the headers needed to parse it
    -- again (Standard Webhooks: webhook-id).
    body bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Last time a message for the row was sent to the queue (the sweeper re-sends
    -- pending rows whose message is overdue).
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'processed', 'parked')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    processed_at timestamptz,
    park_reason text CHECK (park_reason IS NULL OR length(park_reason) <= 1000),
    CONSTRAINT webhook_inbox_event_key UNIQUE (merchant_id, gateway, event_id),
    CONSTRAINT webhook_inbox_parked_has_reason CHECK ((state = 'parked') = (park_reason IS NOT NULL))
);

-- The sweeper reads only pending rows, oldest message first.
CREATE INDEX webhook_inbox_pending_idx ON webhook_inbox (enqueued_at) WHERE state = 'pending';
