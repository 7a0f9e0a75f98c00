--
-- Rename model Activity to TaskEvent
--
ALTER TABLE "tasks_activity" RENAME TO "tasks_taskevent";
ALTER TABLE "tasks_taskevent" ALTER COLUMN "verb" TYPE varchar(64);
--
-- Raw SQL operation
--
CREATE OR REPLACE FUNCTION tasks_task_log_status_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW."status" IS DISTINCT FROM OLD."status" THEN
        INSERT INTO "tasks_taskevent" ("verb", "payload", "created_at", "actor_id", "task_id")
        VALUES ('status_changed',
                jsonb_build_object('from', OLD."status", 'to', NEW."status"),
                now(), NULL, NEW."id");
    END IF;
    RETURN NEW;
END;
$$;
