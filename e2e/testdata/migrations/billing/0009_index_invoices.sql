-- +goose Up
CREATE INDEX invoices_customer_id_idx ON invoices (customer_id);
CREATE INDEX invoices_open_due_on_idx ON invoices (due_on) WHERE status = 'open';
CREATE INDEX invoices_subscription_id_idx ON invoices (subscription_id);
