-- +goose Up
CREATE TABLE currencies (
    code        char(3) PRIMARY KEY,
    name        text NOT NULL,
    minor_units smallint NOT NULL DEFAULT 2 CHECK (minor_units BETWEEN 0 AND 4)
);

INSERT INTO currencies (code, name, minor_units) VALUES
    ('USD', 'US Dollar', 2),
    ('EUR', 'Euro', 2),
    ('GBP', 'Pound Sterling', 2),
    ('CAD', 'Canadian Dollar', 2),
    ('JPY', 'Yen', 0);

CREATE TABLE customers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_ref  uuid NOT NULL DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    email         text,
    currency      char(3) NOT NULL DEFAULT 'USD' REFERENCES currencies (code),
    balance_cents bigint NOT NULL DEFAULT 0,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_external_ref_key UNIQUE (external_ref)
);

CREATE INDEX customers_email_idx ON customers (lower(email));
