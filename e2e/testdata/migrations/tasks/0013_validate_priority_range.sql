--
-- Raw SQL operation
--
ALTER TABLE "tasks_task" VALIDATE CONSTRAINT "tasks_task_priority_range";
--
-- Rename field assignee on task to assigned_to
--
ALTER TABLE "tasks_task" RENAME COLUMN "assignee_id" TO "assigned_to_id";
