BEGIN;
ALTER TABLE messages ADD COLUMN deleted_at timestamp(6) without time zone;
UPDATE messages SET deleted_at = updated_at, body = '' WHERE user_id IS NULL;
DELETE FROM reactions WHERE message_id IN (SELECT id FROM messages WHERE deleted_at IS NOT NULL);
COMMIT;

CREATE INDEX CONCURRENTLY index_messages_on_deleted_at ON messages USING btree (deleted_at) WHERE deleted_at IS NOT NULL;
