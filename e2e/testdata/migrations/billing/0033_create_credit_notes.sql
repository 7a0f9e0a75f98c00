-- +goose Up
CREATE DOMAIN money_cents AS bigint CHECK (VALUE >= 0);

CREATE TABLE credit_notes (
    id           bigserial PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    invoice_id   bigint,
    amount_cents money_cents NOT NULL,
    reason       text NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    voided       boolean NOT NULL DEFAULT false
);

CREATE INDEX credit_notes_customer_id_idx ON credit_notes (customer_id);
