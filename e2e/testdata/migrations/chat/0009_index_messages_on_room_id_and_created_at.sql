CREATE INDEX CONCURRENTLY IF NOT EXISTS index_messages_on_room_id_and_created_at
    ON messages USING btree (room_id, created_at);
