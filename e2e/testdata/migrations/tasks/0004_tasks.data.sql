INSERT INTO "tasks_workspace" ("name", "slug", "created_at", "owner_id")
SELECT 'Workspace ' || g, 'workspace-' || g, now() - g * interval '2 days', u."id"
FROM generate_series(1, 120) AS g
JOIN "accounts_user" u ON u."username" = 'member' || g;

INSERT INTO "tasks_project" ("name", "description", "archived", "created_at", "workspace_id")
SELECT 'Project ' || g, 'Description of project ' || g, g % 9 = 0, now() - g * interval '1 day', w."id"
FROM generate_series(1, 300) AS g
JOIN "tasks_workspace" w ON w."slug" = 'workspace-' || ((g % 120) + 1);

INSERT INTO "tasks_task" ("title", "description", "status", "priority", "due_date", "created_at", "updated_at", "assignee_id", "project_id")
SELECT 'Task ' || g || ': ' || (ARRAY['fix login', 'write docs', 'review PR', 'plan sprint', 'triage bugs'])[g % 5 + 1],
       repeat('Details. ', g % 5 + 1),
       (ARRAY['todo', 'in_progress', 'done', 'todo'])[g % 4 + 1],
       (g % 4) + 1,
       CASE WHEN g % 3 = 0 THEN NULL ELSE current_date + (g % 60) END,
       now() - g * interval '3 hours',
       now() - g * interval '1 hour',
       CASE WHEN g % 6 = 0 THEN NULL ELSE (SELECT "id" FROM "accounts_user" WHERE "username" = 'member' || ((g % 300) + 1)) END,
       (SELECT "id" FROM "tasks_project" WHERE "name" = 'Project ' || ((g % 300) + 1))
FROM generate_series(1, 500) AS g;
