--
-- Raw SQL operation
--
DELETE FROM "tasks_task_labels" WHERE "label_id" IN (SELECT "id" FROM "tasks_label" WHERE "name" LIKE 'tmp-%');
DELETE FROM "tasks_label" WHERE "name" LIKE 'tmp-%';
