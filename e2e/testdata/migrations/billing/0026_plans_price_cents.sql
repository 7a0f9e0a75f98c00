-- +goose Up
ALTER TABLE plans RENAME COLUMN amount_cents TO price_cents;
ALTER TABLE plans ALTER COLUMN name TYPE varchar(120);
ALTER TABLE plans ALTER COLUMN trial_days SET DEFAULT 14;
