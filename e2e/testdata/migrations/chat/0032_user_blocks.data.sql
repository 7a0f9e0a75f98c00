INSERT INTO user_blocks (blocker_id, blocked_id, reason, created_at)
SELECT (g % 400) + 1,
       ((g + 1 + g / 400) % 400) + 1,
       CASE WHEN g % 5 = 0 THEN 'spam' END,
       now() - g * interval '3 hours'
FROM generate_series(1, 300) AS g;
