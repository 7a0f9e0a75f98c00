--
-- Add field is_blocked to task
--
ALTER TABLE "tasks_task" ADD COLUMN "is_blocked" boolean DEFAULT false NOT NULL;
ALTER TABLE "tasks_task" ALTER COLUMN "is_blocked" DROP DEFAULT;
--
-- Alter field priority on task
--
ALTER TABLE "tasks_task" ALTER COLUMN "priority" SET DEFAULT 2;
