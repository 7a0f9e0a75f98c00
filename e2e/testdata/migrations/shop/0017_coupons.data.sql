INSERT INTO coupons (code, percent_off, valid_from, valid_until, max_redemptions)
SELECT 'SAVE' || lpad(g::text, 4, '0'),
       (g % 50) + 1,
       now() - (g % 30) * interval '1 day',
       now() + (g % 60 + 1) * interval '1 day',
       CASE WHEN g % 3 = 0 THEN NULL ELSE g * 10 END
FROM generate_series(1, 150) AS g;

UPDATE orders SET coupon_code = 'SAVE' || lpad((id % 150 + 1)::text, 4, '0') WHERE id % 5 = 0;
