-- runner: transaction
CREATE TYPE notification_kind AS ENUM ('mention', 'reply', 'reaction', 'invite');

CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    message_id bigint REFERENCES messages (id) ON DELETE CASCADE,
    kind notification_kind NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    read_at timestamp(6) without time zone,
    created_at timestamp(6) without time zone NOT NULL
);

CREATE INDEX index_notifications_on_user_id_unread ON notifications USING btree (user_id, created_at) WHERE read_at IS NULL;

CREATE VIEW active_rooms AS
SELECT id, name, kind, created_at FROM rooms WHERE archived_at IS NULL;
