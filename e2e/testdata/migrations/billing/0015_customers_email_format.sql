-- +goose Up
ALTER TABLE customers
    ADD CONSTRAINT customers_email_format CHECK (email LIKE '%_@_%') NOT VALID;
