INSERT INTO carts (user_id, created_at)
SELECT CASE WHEN g % 8 = 0 THEN NULL ELSE (g % 400) + 1 END,
       now() - g * interval '2 hours'
FROM generate_series(1, 200) AS g;

INSERT INTO cart_items (cart_id, product_id, quantity)
SELECT c.id, ((c.id * 13 + k) % 300) + 1, (c.id + k) % 3 + 1
FROM carts c
CROSS JOIN generate_series(0, 1) AS k;
