--
-- Alter field priority on task
--
COMMENT ON COLUMN "tasks_task"."priority" IS '1 = urgent, 2 = normal, 3 = low, 4 = someday';
--
-- Alter Task table comment
--
COMMENT ON TABLE "tasks_task" IS 'Work items belonging to a project';
COMMENT ON COLUMN "tasks_membership"."role" IS 'owner, admin, member or guest';
