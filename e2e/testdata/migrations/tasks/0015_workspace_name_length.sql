--
-- Alter field name on workspace
--
ALTER TABLE "tasks_workspace" ALTER COLUMN "name" TYPE varchar(150);
--
-- Alter field name on label
--
ALTER TABLE "tasks_label" ALTER COLUMN "name" TYPE varchar(80);
