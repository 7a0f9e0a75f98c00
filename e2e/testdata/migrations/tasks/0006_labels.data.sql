INSERT INTO "tasks_label" ("name", "color", "workspace_id")
SELECT CASE WHEN g % 10 = 0 THEN 'tmp-' || g ELSE (ARRAY['bug', 'feature', 'chore', 'urgent', 'design'])[g % 5 + 1] || '-' || g END,
       '#' || lpad(to_hex((g * 99991) % 16777216), 6, '0'),
       w."id"
FROM generate_series(1, 240) AS g
JOIN "tasks_workspace" w ON w."slug" = 'workspace-' || ((g % 120) + 1);

INSERT INTO "tasks_task_labels" ("task_id", "label_id")
SELECT t."id", l."id"
FROM "tasks_task" t
JOIN "tasks_label" l ON l."id" = ((t."id" * 7) % 240) + 1
UNION ALL
SELECT t."id", l."id"
FROM "tasks_task" t
JOIN "tasks_label" l ON l."id" = ((t."id" * 7 + 1) % 240) + 1
WHERE t."id" % 2 = 0;
