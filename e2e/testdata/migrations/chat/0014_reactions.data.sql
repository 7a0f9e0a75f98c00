INSERT INTO reactions (message_id, user_id, emoji, created_at)
SELECT m.id,
       ((m.id * 11 + k) % 400) + 1,
       (ARRAY[':thumbsup:', ':tada:', ':eyes:', ':heart:'])[(m.id + k) % 4 + 1],
       now() - m.id * interval '5 minutes'
FROM messages m
CROSS JOIN generate_series(0, 1) AS k
WHERE m.id <= 220;
