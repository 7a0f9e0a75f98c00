--
-- Add field key to project
--
ALTER TABLE "tasks_project" ADD COLUMN "key" varchar(10) NULL;
--
-- Raw SQL operation
--
UPDATE "tasks_project" SET "key" = 'P' || "id";
--
-- Alter field key on project
--
ALTER TABLE "tasks_project" ALTER COLUMN "key" SET NOT NULL;
CREATE UNIQUE INDEX "tasks_project_key_uniq" ON "tasks_project" ("workspace_id", "key");
