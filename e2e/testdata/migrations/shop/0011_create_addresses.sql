CREATE TABLE IF NOT EXISTS addresses (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('billing', 'shipping')),
    line1       text NOT NULL,
    line2       text,
    city        text NOT NULL,
    postal_code varchar(10) NOT NULL,
    country     char(2) NOT NULL DEFAULT 'US',
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS addresses_user_id_idx ON addresses (user_id);
CREATE UNIQUE INDEX IF NOT EXISTS addresses_one_default_per_kind
    ON addresses (user_id, kind) WHERE is_default;
