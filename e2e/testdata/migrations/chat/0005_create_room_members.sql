CREATE TABLE room_members (
    id bigserial PRIMARY KEY,
    room_id bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role character varying(20) NOT NULL DEFAULT 'member',
    muted boolean NOT NULL DEFAULT false,
    joined_at timestamp(6) without time zone NOT NULL,
    CONSTRAINT room_members_role_check CHECK (role IN ('owner', 'moderator', 'member'))
);

CREATE INDEX index_room_members_on_user_id ON room_members USING btree (user_id);
