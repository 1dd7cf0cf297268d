-- Idempotency keys partitioned by day (UTC) of created_at, so that a day past the TTL is
-- dropped whole (DROP TABLE) instead of deleted row by row. A unique index of a
-- partitioned table must hold the partition key, so (merchant, key) is unique among the
-- live rows through the claim itself (adapters/idempotency_keys.py takes an advisory
-- lock on the pair); the primary key is the lookup index of every partition. The API
-- processes create the coming days' partitions ahead and drop expired ones (api/maintenance.py).
ALTER TABLE idempotency_keys RENAME TO idempotency_keys_unpartitioned;
ALTER TABLE idempotency_keys_unpartitioned RENAME CONSTRAINT idempotency_keys_pkey TO idempotency_keys_unpartitioned_pkey;
ALTER INDEX idempotency_keys_created_idx RENAME TO idempotency_keys_unpartitioned_created_idx;

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
    PRIMARY KEY (merchant_id, idempotency_key, created_at)
) PARTITION BY RANGE (created_at);

-- One partition per day from the oldest kept key (or two days back) to a week ahead.
DO $$
DECLARE
    day date;
    today date := (now() AT TIME ZONE 'UTC')::date;
    oldest date := (SELECT min(created_at AT TIME ZONE 'UTC')::date FROM idempotency_keys_unpartitioned);
BEGIN
    FOR day IN SELECT generate_series(least(oldest, today - 2), today + 7, interval '1 day')::date LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF idempotency_keys FOR VALUES FROM (%L) TO (%L)',
            'idempotency_keys_p' || to_char(day, 'YYYYMMDD'),
            day::timestamp AT TIME ZONE 'UTC',
            (day + 1)::timestamp AT TIME ZONE 'UTC'
        );
    END LOOP;
END $$;

INSERT INTO idempotency_keys SELECT * FROM idempotency_keys_unpartitioned;
DROP TABLE idempotency_keys_unpartitioned;
