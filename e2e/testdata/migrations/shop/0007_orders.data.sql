INSERT INTO orders (user_id, status, total_cents, placed_at)
SELECT (g % 400) + 1,
       (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[g % 4 + 1]::order_status,
       0,
       now() - g * interval '3 hours'
FROM generate_series(1, 250) AS g;

INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
SELECT o.id,
       ((o.id * 7 + k) % 300) + 1,
       k + 1,
       p.price_cents
FROM orders o
CROSS JOIN generate_series(0, 1) AS k
JOIN products p ON p.id = ((o.id * 7 + k) % 300) + 1;

UPDATE orders o
SET total_cents = s.total
FROM (SELECT order_id, sum(quantity * unit_price_cents) AS total FROM order_items GROUP BY order_id) s
WHERE s.order_id = o.id;
