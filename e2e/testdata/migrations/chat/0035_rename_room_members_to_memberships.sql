BEGIN;
ALTER TABLE room_members RENAME TO memberships;
ALTER SEQUENCE room_members_id_seq RENAME TO memberships_id_seq;
ALTER INDEX index_room_members_on_user_id RENAME TO index_memberships_on_user_id;
ALTER TABLE memberships RENAME CONSTRAINT room_members_room_id_user_id_key TO memberships_room_id_user_id_key;
ALTER TABLE memberships ADD COLUMN last_read_message_id bigint REFERENCES messages (id) ON DELETE SET NULL;
COMMIT;
