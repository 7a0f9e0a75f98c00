-- +goose Up
ALTER TABLE payments DETACH PARTITION payments_wallet;
ALTER TABLE payments_wallet RENAME TO payments_wallet_legacy;
