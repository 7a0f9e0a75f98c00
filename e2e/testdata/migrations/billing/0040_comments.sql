-- +goose Up
COMMENT ON TABLE invoices IS 'Partitioned by issued_on, one partition per year.';
COMMENT ON COLUMN invoices.tax_cents IS 'Sum of invoice_lines.tax_cents at finalization.';
COMMENT ON TABLE ledger_entries IS 'Append-only, balance_cents on customers is derived from it.';
COMMENT ON COLUMN plans.price_cents IS 'Price per interval in the minor unit of the currency.';
INSERT INTO billing_settings (name, value) VALUES ('schema_documented', 'true');
