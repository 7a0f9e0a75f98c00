-- +goose Up
INSERT INTO payments (customer_id, invoice_id, method, amount_cents, currency, received_at)
SELECT c.id,
       CASE WHEN g % 6 <> 0 THEN g END,
       (ARRAY['card', 'ach', 'sepa', 'wire', 'paypal', 'apple_pay'])[g % 6 + 1],
       (g * 53) % 40000 + 50,
       c.currency,
       now() - g * interval '7 hours'
FROM generate_series(1, 450) AS g
JOIN customers c ON c.id = (g % 300) + 1;
