--
-- Add field parent to task
--
ALTER TABLE "tasks_task" ADD COLUMN "parent_id" bigint NULL;
--
-- Raw SQL operation
--
UPDATE "tasks_task" AS t SET "parent_id" = p."id"
FROM "tasks_task" AS p
WHERE p."id" = t."id" - 1 AND t."id" % 10 = 0 AND p."project_id" = t."project_id";
UPDATE "tasks_task" AS t SET "parent_id" = p."id"
FROM "tasks_task" AS p
WHERE p."project_id" = t."project_id" AND p."id" < t."id" AND t."id" % 10 = 5
  AND p."id" = (SELECT min(q."id") FROM "tasks_task" q WHERE q."project_id" = t."project_id");
--
-- Raw SQL operation (validated separately in 0038)
--
ALTER TABLE "tasks_task" ADD CONSTRAINT "tasks_task_parent_id_8c2d41f7_fk_tasks_task_id" FOREIGN KEY ("parent_id") REFERENCES "tasks_task" ("id") DEFERRABLE INITIALLY DEFERRED NOT VALID;
