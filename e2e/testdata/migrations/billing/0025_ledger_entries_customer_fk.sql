-- +goose Up
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_entries_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;

ALTER TABLE ledger_entries ADD COLUMN entry_uuid uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_entry_uuid_key UNIQUE (entry_uuid);
