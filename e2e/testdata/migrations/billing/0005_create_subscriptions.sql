-- +goose Up
CREATE TYPE subscription_status AS ENUM ('trialing', 'active', 'past_due', 'canceled');

CREATE TABLE subscriptions (
    id                   bigserial PRIMARY KEY,
    customer_id          bigint NOT NULL REFERENCES customers (id),
    plan_id              integer NOT NULL REFERENCES plans (id),
    status               subscription_status NOT NULL DEFAULT 'trialing',
    quantity             integer NOT NULL DEFAULT 1,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    canceled_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_period_check CHECK (current_period_end > current_period_start)
);

CREATE INDEX subscriptions_customer_id_idx ON subscriptions (customer_id);
CREATE INDEX subscriptions_plan_id_idx ON subscriptions (plan_id);
