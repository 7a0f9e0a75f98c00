--
-- Alter field title on task
--
ALTER TABLE "tasks_task" ALTER COLUMN "title" TYPE text USING "title"::text;
--
-- Alter field size on attachment
--
ALTER TABLE "tasks_attachment" ALTER COLUMN "size" TYPE bigint USING "size"::bigint;
