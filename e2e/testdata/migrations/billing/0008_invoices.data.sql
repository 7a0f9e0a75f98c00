-- +goose Up
INSERT INTO invoices (customer_id, subscription_id, number, status, currency, subtotal_cents, total_cents, issued_on, due_on)
SELECT s.customer_id,
       s.id,
       'INV-' || lpad(g::text, 7, '0'),
       (ARRAY['draft', 'open', 'paid', 'paid', 'void'])[g % 5 + 1]::invoice_status,
       c.currency,
       (g * 311) % 90000 + 100,
       (g * 311) % 90000 + 100,
       date '2023-01-01' + (g * 7) % 1090,
       date '2023-01-01' + (g * 7) % 1090 + 30
FROM generate_series(1, 450) AS g
JOIN subscriptions s ON s.id = (g % 400) + 1
JOIN customers c ON c.id = s.customer_id;

INSERT INTO invoice_lines (invoice_id, invoice_issued_on, description, quantity, unit_amount_cents, amount_cents)
SELECT i.id, i.issued_on, 'Subscription fee for ' || i.number, 1, i.subtotal_cents, i.subtotal_cents
FROM invoices i;
