BEGIN;

CREATE TABLE reactions (
    id bigserial PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji character varying(32) NOT NULL,
    created_at timestamp(6) without time zone NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX index_reactions_on_message_user_emoji ON reactions USING btree (message_id, user_id, emoji);
CREATE INDEX index_reactions_on_user_id ON reactions USING btree (user_id);

COMMIT;
