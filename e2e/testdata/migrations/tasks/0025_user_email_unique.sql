--
-- Raw SQL operation
--
UPDATE "accounts_user" SET "email" = lower("email") WHERE "email" <> lower("email");
--
-- Alter field email on user
--
ALTER TABLE "accounts_user" ADD CONSTRAINT "accounts_user_email_key" UNIQUE ("email");
CREATE INDEX "accounts_user_email_0ea73a24_like" ON "accounts_user" ("email" varchar_pattern_ops);
