-- +goose Up
CREATE TABLE billing_settings (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO billing_settings (name, value) VALUES ('invoice_prefix', 'INV');
INSERT INTO billing_settings (name, value) VALUES ('grace_period_days', '14');
