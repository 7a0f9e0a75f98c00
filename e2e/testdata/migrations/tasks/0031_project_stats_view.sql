--
-- Raw SQL operation
--
CREATE VIEW "tasks_project_stats" AS
SELECT p."id" AS "project_id",
       count(t."id") FILTER (WHERE t."status" = 'todo')        AS "todo_count",
       count(t."id") FILTER (WHERE t."status" = 'in_progress') AS "in_progress_count",
       count(t."id") FILTER (WHERE t."status" = 'done')        AS "done_count"
FROM "tasks_project" p
LEFT JOIN "tasks_task" t ON t."project_id" = p."id"
GROUP BY p."id";
