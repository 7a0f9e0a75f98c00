-- +goose Up
UPDATE customers
SET email = 'unknown+' || id || '@invalid.test'
WHERE email IS NULL;

ALTER TABLE customers ALTER COLUMN email SET NOT NULL;
