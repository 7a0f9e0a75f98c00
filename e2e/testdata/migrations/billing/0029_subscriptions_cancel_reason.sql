-- +goose Up
LOCK TABLE subscriptions IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE subscriptions ADD COLUMN cancel_reason text;

UPDATE subscriptions SET cancel_reason = 'unknown' WHERE status = 'canceled';

ALTER TABLE subscriptions
    ADD CONSTRAINT subscriptions_canceled_at_check
    CHECK (status <> 'canceled' OR canceled_at IS NOT NULL);
