-- Read models, written only by projections (rows and tracking in one transaction).
-- `position` is the notification id of the last event reflected in the row.

CREATE TABLE inventory_levels (
    merchant_id uuid NOT NULL,
    sku text NOT NULL,
    item_id uuid NOT NULL UNIQUE,
    on_hand bigint NOT NULL CHECK (on_hand >= 0),
    reserved bigint NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
    available bigint GENERATED ALWAYS AS (on_hand - reserved) STORED,
    updated_at timestamptz NOT NULL,
    version bigint NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (merchant_id, sku)
);

CREATE TABLE orders_view (
    order_id uuid PRIMARY KEY,
    merchant_id uuid NOT NULL,
    status text NOT NULL,
    currency text NOT NULL,
    customer_ref text,
    lines jsonb NOT NULL,
    total bigint NOT NULL,
    amount_captured bigint NOT NULL,
    amount_refunded bigint NOT NULL,
    payment_ids uuid[] NOT NULL,
    hold_expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version bigint NOT NULL,
    position bigint NOT NULL
);

-- Lists are keyset-paginated by (created_at, order_id) within a merchant.
CREATE INDEX orders_view_merchant_idx ON orders_view (merchant_id, created_at, order_id);
CREATE INDEX orders_view_merchant_status_idx ON orders_view (merchant_id, status, created_at, order_id);
-- The hold-expiry sweep reads only reserved orders that are due.
CREATE INDEX orders_view_due_holds_idx ON orders_view (hold_expires_at) WHERE status = 'reserved';
