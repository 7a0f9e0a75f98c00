--
-- Add field estimate_minutes to task
--
ALTER TABLE "tasks_task" ADD COLUMN "estimate_minutes" integer NULL;
--
-- Create constraint tasks_task_estimate_positive on model task
--
ALTER TABLE "tasks_task" ADD CONSTRAINT "tasks_task_estimate_positive" CHECK ("estimate_minutes" IS NULL OR "estimate_minutes" > 0);
--
-- Raw SQL operation
--
UPDATE "tasks_task" SET "estimate_minutes" = 30 * "priority" WHERE "status" IN ('todo', 'in_progress');
