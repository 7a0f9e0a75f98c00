INSERT INTO rooms (name, topic, kind, created_by_id, archived_at, created_at, updated_at)
SELECT 'room-' || g,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'Talk about topic ' || g END,
       (ARRAY['public', 'public', 'private', 'direct'])[g % 4 + 1]::room_kind,
       CASE WHEN g % 10 = 0 THEN NULL ELSE (g % 400) + 1 END,
       CASE WHEN g % 25 = 0 THEN now() - interval '10 days' END,
       now() - g * interval '12 hours',
       now() - g * interval '1 hour'
FROM generate_series(1, 200) AS g;

INSERT INTO room_members (room_id, user_id, role, muted, joined_at)
SELECT r.id,
       ((r.id * 3 + k * 37) % 400) + 1,
       CASE WHEN k = 0 THEN 'owner' ELSE 'member' END,
       k = 2,
       now() - (r.id + k) * interval '1 hour'
FROM rooms r
CROSS JOIN generate_series(0, 2) AS k
WHERE r.id <= 160;
