--
-- Raw SQL operation
--
ALTER TABLE "tasks_membership" ADD PRIMARY KEY ("workspace_id", "user_id");
ALTER TABLE "tasks_membership" ADD CONSTRAINT "tasks_membership_role_check" CHECK ("role" IN ('owner', 'admin', 'member', 'guest'));
CREATE INDEX "tasks_membership_user_id_2e91" ON "tasks_membership" ("user_id");
