CREATE TABLE user_blocks (
    blocker_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason text,
    created_at timestamp(6) without time zone NOT NULL DEFAULT now()
);
