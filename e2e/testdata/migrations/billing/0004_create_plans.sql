-- +goose Up
CREATE TYPE billing_interval AS ENUM ('month', 'year');

CREATE TABLE plans (
    id               serial PRIMARY KEY,
    code             varchar(50) NOT NULL UNIQUE,
    name             text NOT NULL,
    amount_cents     integer NOT NULL CHECK (amount_cents >= 0),
    currency         char(3) NOT NULL REFERENCES currencies (code),
    billing_interval billing_interval NOT NULL DEFAULT 'month',
    trial_days       integer NOT NULL DEFAULT 0,
    active           boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (code, name, amount_cents, currency, billing_interval, trial_days) VALUES
    ('starter-monthly', 'Starter', 900, 'USD', 'month', 14),
    ('starter-yearly', 'Starter (annual)', 9000, 'USD', 'year', 14),
    ('team-monthly', 'Team', 4900, 'USD', 'month', 14),
    ('team-yearly', 'Team (annual)', 49000, 'USD', 'year', 14),
    ('business-monthly', 'Business', 19900, 'USD', 'month', 0),
    ('business-yearly', 'Business (annual)', 199000, 'USD', 'year', 0);
