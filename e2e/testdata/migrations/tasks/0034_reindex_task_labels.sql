--
-- Raw SQL operation
--
REINDEX TABLE "tasks_task_labels";
DROP INDEX IF EXISTS "tasks_task_labels_task_id_c4a9d2b1";
