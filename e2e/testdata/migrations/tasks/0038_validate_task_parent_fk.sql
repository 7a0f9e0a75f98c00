--
-- Raw SQL operation
--
ALTER TABLE "tasks_task" VALIDATE CONSTRAINT "tasks_task_parent_id_8c2d41f7_fk_tasks_task_id";
CREATE INDEX "tasks_task_parent_id_8c2d41f7" ON "tasks_task" ("parent_id");
