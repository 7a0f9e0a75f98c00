--
-- Add field position to task
--
ALTER TABLE "tasks_task" ADD COLUMN "position" integer NULL;
--
-- Raw SQL operation
--
UPDATE "tasks_task" SET "position" = "id" * 1024;
--
-- Alter field position on task
--
ALTER TABLE "tasks_task" ALTER COLUMN "position" SET NOT NULL;
CREATE INDEX "tasks_task_project_id_position_5b0a" ON "tasks_task" ("project_id", "position");
