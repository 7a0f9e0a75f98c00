CREATE TABLE IF NOT EXISTS carts (
    id         bigserial PRIMARY KEY,
    user_id    bigint REFERENCES users (id) ON DELETE CASCADE,
    token      uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT now() + interval '30 days'
);

CREATE TABLE IF NOT EXISTS cart_items (
    cart_id    bigint NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, product_id)
);

CREATE INDEX IF NOT EXISTS carts_user_id_idx ON carts (user_id);
