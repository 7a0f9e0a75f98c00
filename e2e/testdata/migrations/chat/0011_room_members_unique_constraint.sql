-- runner: transaction
ALTER TABLE room_members
    ADD CONSTRAINT room_members_room_id_user_id_key
    UNIQUE USING INDEX index_room_members_on_room_id_and_user_id;
