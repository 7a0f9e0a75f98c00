CREATE TYPE user_status AS ENUM ('active', 'suspended');

CREATE DOMAIN email_address AS varchar(255)
    CHECK (VALUE ~ '^[^@[:space:]]+@[^@[:space:]]+$');

CREATE TABLE IF NOT EXISTS users (
    id            bigserial PRIMARY KEY,
    email         email_address NOT NULL,
    full_name     varchar(100),
    password_hash text NOT NULL,
    status        user_status NOT NULL DEFAULT 'active',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);
