INSERT INTO notifications (user_id, message_id, kind, payload, read_at, created_at)
SELECT (g % 400) + 1,
       CASE WHEN g % 4 = 3 THEN NULL ELSE (g % 500) + 1 END,
       (ARRAY['mention', 'reply', 'reaction', 'invite'])[g % 4 + 1]::notification_kind,
       jsonb_build_object('preview', 'notification ' || g),
       CASE WHEN g % 3 = 0 THEN now() - interval '1 hour' END,
       now() - g * interval '9 minutes'
FROM generate_series(1, 480) AS g
WHERE g % 4 = 3 OR EXISTS (SELECT 1 FROM messages WHERE id = (g % 500) + 1);
