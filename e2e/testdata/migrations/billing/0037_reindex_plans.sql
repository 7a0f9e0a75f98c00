-- +goose Up
REINDEX TABLE plans;
REINDEX INDEX customers_external_ref_key;
