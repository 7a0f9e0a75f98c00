--
-- Remove field edited_at from comment
--
ALTER TABLE "tasks_comment" DROP COLUMN "edited_at" CASCADE;
--
-- Alter field content_type on attachment
--
ALTER TABLE "tasks_attachment" ALTER COLUMN "content_type" DROP NOT NULL;
--
-- Remove constraint tasks_membership_role_check from model membership
--
ALTER TABLE "tasks_membership" DROP CONSTRAINT "tasks_membership_role_check";
--
-- Create constraint tasks_membership_role_check on model membership
--
ALTER TABLE "tasks_membership" ADD CONSTRAINT "tasks_membership_role_check" CHECK ("role" IN ('owner', 'admin', 'member', 'guest', 'viewer'));
