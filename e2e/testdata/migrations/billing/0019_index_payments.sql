-- +goose Up
CREATE INDEX payments_customer_id_received_at_idx ON payments (customer_id, received_at DESC);
CREATE INDEX payments_invoice_id_idx ON payments (invoice_id) WHERE invoice_id IS NOT NULL;
