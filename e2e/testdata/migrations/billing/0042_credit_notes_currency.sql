-- +goose Up
ALTER TABLE credit_notes ADD COLUMN currency char(3) REFERENCES currencies (code);

UPDATE credit_notes
SET currency = c.currency
FROM customers c
WHERE c.id = credit_notes.customer_id;

ALTER TABLE credit_notes ALTER COLUMN currency SET NOT NULL;
ALTER TABLE credit_notes DROP CONSTRAINT credit_notes_customer_invoice_key;
ALTER TABLE credit_notes DROP COLUMN voided;
