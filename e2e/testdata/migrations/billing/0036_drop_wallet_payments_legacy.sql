-- +goose Up
DROP TABLE payments_wallet_legacy;
DROP TABLE IF EXISTS invoice_drafts_old;

CREATE INDEX subscriptions_billable_idx ON subscriptions (current_period_end)
    WHERE status IN ('active', 'past_due', 'paused');
