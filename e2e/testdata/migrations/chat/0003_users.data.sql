INSERT INTO users (handle, display_name, avatar_url, presence, settings, created_at, updated_at)
SELECT 'user_' || g,
       'Chat User ' || g,
       CASE WHEN g % 4 = 0 THEN NULL ELSE 'https://cdn.example.com/avatars/' || md5(g::text) || '.png' END,
       (ARRAY['online', 'away', 'offline'])[g % 3 + 1]::user_presence,
       jsonb_build_object('theme', CASE WHEN g % 2 = 0 THEN 'dark' ELSE 'light' END, 'notify', g % 5 <> 0),
       now() - g * interval '1 day',
       now() - g * interval '1 hour'
FROM generate_series(1, 400) AS g;
