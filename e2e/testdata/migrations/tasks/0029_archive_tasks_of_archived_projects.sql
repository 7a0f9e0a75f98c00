--
-- Raw SQL operation
--
LOCK TABLE "tasks_task" IN SHARE ROW EXCLUSIVE MODE;
UPDATE "tasks_task" SET "status" = 'archived', "updated_at" = now()
WHERE "project_id" IN (SELECT "id" FROM "tasks_project" WHERE "archived");
