-- runner: statements
-- +goose NO TRANSACTION
-- +goose Up
ALTER TYPE subscription_status ADD VALUE IF NOT EXISTS 'paused' AFTER 'past_due';
