-- Read model of payments, written only by the payments projection (rows and tracking
-- in one transaction). `anomalies` is the payment's list of {"kind", "detail"} to
-- reconcile; `position` is the notification id of the last event reflected in the row.
CREATE TABLE payments_view (
    payment_id uuid PRIMARY KEY,
    merchant_id uuid NOT NULL,
    order_id uuid,
    gateway text NOT NULL,
    gateway_ref text NOT NULL,
    status text NOT NULL,
    amount_authorized bigint NOT NULL CHECK (amount_authorized >= 0),
    amount_captured bigint NOT NULL CHECK (amount_captured >= 0),
    amount_refunded bigint NOT NULL CHECK (amount_refunded >= 0 AND amount_refunded <= amount_captured),
    currency text NOT NULL,
    anomalies jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version bigint NOT NULL,
    position bigint NOT NULL,
    CONSTRAINT payments_view_gateway_ref_key UNIQUE (merchant_id, gateway, gateway_ref)
);

-- Lists are keyset-paginated by (created_at, payment_id) within a merchant, or an order.
CREATE INDEX payments_view_merchant_idx ON payments_view (merchant_id, created_at, payment_id);
CREATE INDEX payments_view_order_idx ON payments_view (merchant_id, order_id, created_at, payment_id);
-- Reconciliation reads only payments with something to reconcile.
CREATE INDEX payments_view_anomalies_idx ON payments_view (merchant_id, created_at, payment_id)
    WHERE anomalies <> '[]'::jsonb;
