-- +goose Up
CREATE TABLE payments_crypto (LIKE payments INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

ALTER TABLE payments ATTACH PARTITION payments_crypto FOR VALUES IN ('btc', 'usdc');

INSERT INTO billing_settings (name, value) VALUES ('crypto_payments_enabled', 'false');
