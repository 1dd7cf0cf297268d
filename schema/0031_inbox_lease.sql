-- A row being processed holds a lease: another worker (a duplicate message, a message the
-- sweeper sent again) does not claim it, and the sweeper does not send it again, until
-- the lease ends. NULL: nobody is processing it. The holder renews it while it works and
-- names itself (lease_owner, random per claim), so that it never extends or ends a lease
-- another worker took over after its own ran out.
ALTER TABLE webhook_inbox ADD COLUMN locked_until timestamptz;
ALTER TABLE webhook_inbox ADD COLUMN lease_owner uuid;
-- The operator's re-drives of parked rows (daybook inbox redrive): how often, and when last.
ALTER TABLE webhook_inbox ADD COLUMN redrives integer NOT NULL DEFAULT 0 CHECK (redrives >= 0);
ALTER TABLE webhook_inbox ADD COLUMN redriven_at timestamptz;
-- Re-drives read only parked rows, of one merchant or all.
CREATE INDEX webhook_inbox_parked_idx ON webhook_inbox (merchant_id, inbox_id) WHERE state = 'parked';
