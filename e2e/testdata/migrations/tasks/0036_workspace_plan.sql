--
-- Add field plan to workspace
--
ALTER TABLE "tasks_workspace" ADD COLUMN "plan" varchar(20) DEFAULT 'free' NOT NULL;
ALTER TABLE "tasks_workspace" ALTER COLUMN "plan" DROP DEFAULT;
--
-- Alter field slug on workspace
--
ALTER TABLE "tasks_workspace" ALTER COLUMN "slug" TYPE varchar(80);
--
-- Alter field color on project
--
ALTER TABLE "tasks_project" ALTER COLUMN "color" DROP NOT NULL;
