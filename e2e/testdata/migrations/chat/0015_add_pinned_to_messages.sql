ALTER TABLE messages ADD COLUMN edited_at timestamp(6) without time zone;
ALTER TABLE messages ADD COLUMN pinned boolean DEFAULT false NOT NULL;
CREATE INDEX index_messages_on_room_id_pinned ON messages USING btree (room_id) WHERE pinned;
