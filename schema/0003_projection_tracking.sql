-- Where each projection has got to in the notification log. A projection writes its
-- read-model rows and its row here in one transaction (exactly-once processing).
CREATE TABLE projection_tracking (
    projection text PRIMARY KEY,
    notification_id bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
