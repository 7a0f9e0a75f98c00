--
-- Create model Membership (composite key managed by hand)
--
CREATE TABLE "tasks_membership" ("workspace_id" bigint NOT NULL, "user_id" bigint NOT NULL, "role" varchar(16) NOT NULL DEFAULT 'member', "joined_at" timestamp with time zone NOT NULL DEFAULT now());
ALTER TABLE "tasks_membership" ADD CONSTRAINT "tasks_membership_workspace_id_7f3a_fk_tasks_workspace_id" FOREIGN KEY ("workspace_id") REFERENCES "tasks_workspace" ("id") DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE "tasks_membership" ADD CONSTRAINT "tasks_membership_user_id_2e91_fk_accounts_user_id" FOREIGN KEY ("user_id") REFERENCES "accounts_user" ("id") DEFERRABLE INITIALLY DEFERRED;
--
-- Raw SQL operation
--
INSERT INTO "tasks_membership" ("workspace_id", "user_id", "role")
SELECT "id", "owner_id", 'owner' FROM "tasks_workspace";
