--
-- Remove field description from project
--
ALTER TABLE "tasks_project" DROP COLUMN "description" CASCADE;
--
-- Add field color to project
--
ALTER TABLE "tasks_project" ADD COLUMN "color" varchar(7) DEFAULT '#6b7280' NOT NULL;
