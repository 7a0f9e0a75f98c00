--
-- Create constraint tasks_task_status_valid on model task
--
ALTER TABLE "tasks_task" ADD CONSTRAINT "tasks_task_status_valid" CHECK ("status" IN ('todo', 'in_progress', 'done', 'archived'));
--
-- Create constraint tasks_task_priority_range on model task (added NOT VALID by hand, validated in 0013)
--
ALTER TABLE "tasks_task" ADD CONSTRAINT "tasks_task_priority_range" CHECK ("priority" BETWEEN 1 AND 4) NOT VALID;
