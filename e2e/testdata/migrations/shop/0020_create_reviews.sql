CREATE TABLE IF NOT EXISTS reviews (
    id         bigserial PRIMARY KEY,
    product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rating     smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body       text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, user_id)
);

CREATE INDEX IF NOT EXISTS reviews_user_id_idx ON reviews (user_id);
