-- Row-level security on the read models. The API reads them as daybook_reader (its
-- read connections `SET ROLE daybook_reader`), a role that is neither their owner nor
-- BYPASSRLS, and each read transaction names its merchant with
-- `set_config('daybook.merchant_id', <id>, true)`: a row of another merchant is
-- invisible to it, whatever the SQL. Projections and migrations write as the owner,
-- to whom the policies do not apply.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'daybook_reader') THEN
        CREATE ROLE daybook_reader NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- The owner may act as the reader (a superuser may anyway).
GRANT daybook_reader TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO daybook_reader;
GRANT SELECT ON inventory_levels, orders_view, payments_view, projection_quarantine TO daybook_reader;

ALTER TABLE inventory_levels ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders_view ENABLE ROW LEVEL SECURITY;
ALTER TABLE payments_view ENABLE ROW LEVEL SECURITY;
ALTER TABLE projection_quarantine ENABLE ROW LEVEL SECURITY;

CREATE POLICY merchant_rows ON inventory_levels FOR SELECT
    USING (merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid);
CREATE POLICY merchant_rows ON orders_view FOR SELECT
    USING (merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid);
CREATE POLICY merchant_rows ON payments_view FOR SELECT
    USING (merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid);
CREATE POLICY merchant_rows ON projection_quarantine FOR SELECT
    USING (merchant_id = nullif(current_setting('daybook.merchant_id', true), '')::uuid);
