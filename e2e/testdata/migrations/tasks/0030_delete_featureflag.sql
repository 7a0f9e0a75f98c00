--
-- Delete model FeatureFlag
--
DROP TABLE "tasks_featureflag" CASCADE;
DROP TABLE IF EXISTS "tasks_legacy_reminder" CASCADE;
