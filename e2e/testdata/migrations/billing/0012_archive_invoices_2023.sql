-- +goose Up
ALTER TABLE invoices DETACH PARTITION invoices_2023;
ALTER TABLE invoices_2023 RENAME TO invoices_archive_2023;
COMMENT ON TABLE invoices_archive_2023 IS 'Detached from invoices, kept read-only for auditors.';
