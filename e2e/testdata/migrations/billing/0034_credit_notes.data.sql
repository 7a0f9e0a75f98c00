-- +goose Up
INSERT INTO credit_notes (customer_id, invoice_id, amount_cents, reason, issued_at, voided)
SELECT (g % 300) + 1,
       CASE WHEN g % 2 = 0 THEN g END,
       (g * 41) % 5000 + 1,
       (ARRAY['goodwill', 'duplicate charge', 'service outage'])[g % 3 + 1],
       now() - g * interval '1 day',
       g % 17 = 0
FROM generate_series(1, 200) AS g;
