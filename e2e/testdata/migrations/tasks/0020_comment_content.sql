--
-- Rename field body on comment to content
--
ALTER TABLE "tasks_comment" RENAME COLUMN "body" TO "content";
--
-- Add field edited_at to comment
--
ALTER TABLE "tasks_comment" ADD COLUMN "edited_at" timestamp with time zone NULL;
