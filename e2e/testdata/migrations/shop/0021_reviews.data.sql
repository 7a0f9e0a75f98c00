INSERT INTO reviews (product_id, user_id, rating, body, created_at)
SELECT (g % 300) + 1,
       (g % 400) + 1,
       (g % 5) + 1,
       CASE WHEN g % 10 = 0 THEN 'buy cheap watches at spam.example' ELSE 'Review number ' || g || ' - works as described.' END,
       now() - g * interval '5 hours'
FROM generate_series(1, 400) AS g;
