-- +goose Up
CREATE TABLE invoices_2026 (LIKE invoices INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

ALTER TABLE invoices_2026
    ADD CONSTRAINT invoices_2026_issued_on_bounds
    CHECK (issued_on >= DATE '2026-01-01' AND issued_on < DATE '2027-01-01');

ALTER TABLE invoices ATTACH PARTITION invoices_2026
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');

ALTER TABLE invoices_2026 DROP CONSTRAINT invoices_2026_issued_on_bounds;
