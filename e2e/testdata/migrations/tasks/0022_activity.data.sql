INSERT INTO "tasks_activity" ("verb", "payload", "created_at", "actor_id", "task_id")
SELECT (ARRAY['created', 'commented', 'assigned', 'status_changed'])[g % 4 + 1],
       jsonb_build_object('seq', g, 'source', CASE WHEN g % 2 = 0 THEN 'web' ELSE 'api' END),
       now() - g * interval '20 minutes',
       CASE WHEN g % 5 = 0 THEN NULL ELSE (g % 300) + 1 END,
       (g % 500) + 1
FROM generate_series(1, 480) AS g
WHERE EXISTS (SELECT 1 FROM "tasks_task" WHERE "id" = (g % 500) + 1);
