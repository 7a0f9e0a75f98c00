ALTER TABLE messages ADD COLUMN parent_id bigint REFERENCES messages (id) ON DELETE SET NULL;

CREATE INDEX CONCURRENTLY index_messages_on_parent_id
    ON messages USING btree (parent_id) WHERE parent_id IS NOT NULL;
