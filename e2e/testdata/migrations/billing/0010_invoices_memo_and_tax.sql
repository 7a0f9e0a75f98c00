-- +goose Up
ALTER TABLE invoices ADD COLUMN memo text;
ALTER TABLE invoices ADD COLUMN tax_cents bigint NOT NULL DEFAULT 0;
