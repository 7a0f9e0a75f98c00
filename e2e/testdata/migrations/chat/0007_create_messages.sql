BEGIN;

CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    room_id bigint NOT NULL,
    user_id bigint,
    body text NOT NULL,
    body_format character varying(16) NOT NULL DEFAULT 'markdown',
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

ALTER TABLE messages ADD CONSTRAINT fk_rails_a8db0fb63a FOREIGN KEY (room_id) REFERENCES rooms (id);
ALTER TABLE messages ADD CONSTRAINT fk_rails_273a25a7a6 FOREIGN KEY (user_id) REFERENCES users (id);

CREATE INDEX index_messages_on_room_id ON messages USING btree (room_id);
CREATE INDEX index_messages_on_user_id ON messages USING btree (user_id);

COMMIT;
