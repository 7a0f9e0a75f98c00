--
-- Create index tasks_task_open_due_idx on field(s) project, due_date of model task
--
CREATE INDEX "tasks_task_open_due_idx" ON "tasks_task" ("project_id", "due_date") WHERE NOT ("status" IN ('done', 'archived'));
--
-- Create index tasks_comment_task_created_idx on field(s) task, -created_at of model comment
--
CREATE INDEX "tasks_comment_task_created_idx" ON "tasks_comment" ("task_id", "created_at" DESC);
