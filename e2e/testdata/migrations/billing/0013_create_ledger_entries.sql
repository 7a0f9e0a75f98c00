-- +goose Up
CREATE TYPE ledger_entry_type AS ENUM ('charge', 'payment', 'refund', 'adjustment');

CREATE TABLE ledger_entries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL,
    invoice_id   bigint,
    entry_type   ledger_entry_type NOT NULL,
    amount_cents bigint NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_entries_customer_id_created_at_idx ON ledger_entries (customer_id, created_at);
