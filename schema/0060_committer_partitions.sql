-- Committer partitions (adapters/committers/): which API process runs the commands of
-- each partition. Ownership itself is a PostgreSQL session advisory lock
-- (pg_try_advisory_lock(<namespace>, partition)) held on the owner's own connection:
-- losing the connection loses the partition. This table is the directory beside it:
-- where the owner listens, and an epoch that grows with every claim, so a command
-- forwarded to a former owner is refused by it (fencing). A row counts only while its
-- backend_pid holds the partition's lock (joined with pg_locks).
CREATE TABLE public.committer_partitions (
    partition integer PRIMARY KEY CHECK (partition >= 0),
    epoch bigint NOT NULL,
    address text NOT NULL,
    backend_pid integer NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
