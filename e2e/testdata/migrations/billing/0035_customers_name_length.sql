-- +goose Up
ALTER TABLE customers ALTER COLUMN name TYPE varchar(200);
ALTER TABLE customers DROP COLUMN metadata;
ALTER TABLE subscriptions ALTER COLUMN quantity TYPE bigint;
ALTER TABLE credit_notes ALTER COLUMN reason TYPE varchar(255);
