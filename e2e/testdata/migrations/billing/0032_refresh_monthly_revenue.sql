-- runner: statements
-- +goose NO TRANSACTION
-- +goose Up
REFRESH MATERIALIZED VIEW CONCURRENTLY monthly_revenue;
