-- +goose Up
ALTER TABLE invoice_lines ADD COLUMN tax_rate_id integer REFERENCES tax_rates (id);
ALTER TABLE invoice_lines ADD COLUMN tax_cents bigint NOT NULL DEFAULT 0;

CREATE INDEX invoice_lines_tax_rate_id_idx ON invoice_lines (tax_rate_id) WHERE tax_rate_id IS NOT NULL;
