--
-- Add field uuid to task
--
ALTER TABLE "tasks_task" ADD COLUMN "uuid" uuid DEFAULT gen_random_uuid() NOT NULL;
ALTER TABLE "tasks_task" ADD CONSTRAINT "tasks_task_uuid_key" UNIQUE ("uuid");
