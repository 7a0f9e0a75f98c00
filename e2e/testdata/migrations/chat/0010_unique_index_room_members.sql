CREATE UNIQUE INDEX CONCURRENTLY index_room_members_on_room_id_and_user_id
    ON room_members USING btree (room_id, user_id);
