-- +goose Up
CREATE UNIQUE INDEX invoices_number_issued_on_key ON invoices (number, issued_on);
DROP INDEX IF EXISTS invoices_subscription_id_idx;
CREATE INDEX invoices_subscription_id_issued_on_idx ON invoices (subscription_id, issued_on);
