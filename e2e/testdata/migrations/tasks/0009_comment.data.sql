INSERT INTO "tasks_comment" ("body", "created_at", "author_id", "task_id")
SELECT 'Comment ' || g || ' on this task.',
       now() - g * interval '45 minutes',
       CASE WHEN g % 11 = 0 THEN NULL ELSE (g % 300) + 1 END,
       t."id"
FROM generate_series(1, 450) AS g
JOIN "tasks_task" t ON t."id" = (g % 500) + 1;
