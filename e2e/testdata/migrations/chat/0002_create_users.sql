CREATE TYPE user_presence AS ENUM ('online', 'away', 'offline');

CREATE TABLE users (
    id bigserial PRIMARY KEY,
    handle character varying(30) NOT NULL,
    display_name character varying(80) NOT NULL,
    avatar_url text,
    presence user_presence NOT NULL DEFAULT 'offline',
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

CREATE UNIQUE INDEX index_users_on_handle ON users USING btree (handle);
