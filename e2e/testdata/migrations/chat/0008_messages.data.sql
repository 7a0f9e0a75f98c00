INSERT INTO messages (room_id, user_id, body, body_format, metadata, created_at, updated_at)
SELECT (g % 200) + 1,
       CASE WHEN g % 20 = 0 THEN NULL ELSE (g * 7 % 400) + 1 END,
       'Message ' || g || ': ' || repeat('lorem ipsum ', g % 8 + 1),
       CASE WHEN g % 9 = 0 THEN 'plain' ELSE 'markdown' END,
       CASE WHEN g % 5 = 0 THEN jsonb_build_object('client', 'ios', 'version', '3.' || (g % 10)) ELSE '{}'::jsonb END,
       now() - g * interval '17 minutes',
       now() - g * interval '17 minutes'
FROM generate_series(1, 500) AS g;
