-- +goose Up
INSERT INTO ledger_entries (customer_id, invoice_id, entry_type, amount_cents, description, created_at)
SELECT (g % 300) + 1,
       CASE WHEN g % 4 <> 3 THEN g END,
       (ARRAY['charge', 'payment', 'refund', 'adjustment'])[g % 4 + 1]::ledger_entry_type,
       CASE WHEN g % 4 IN (1, 2) THEN -((g * 97) % 20000) ELSE (g * 97) % 20000 END,
       'entry ' || g,
       now() - g * interval '90 minutes'
FROM generate_series(1, 500) AS g;
