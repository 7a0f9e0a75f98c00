CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);

CREATE TABLE IF NOT EXISTS product_price_history (
    id          bigserial PRIMARY KEY,
    product_id  bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    price_cents cents NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    CONSTRAINT product_price_history_range CHECK (valid_to IS NULL OR valid_to > valid_from)
);

CREATE INDEX IF NOT EXISTS product_price_history_product_id_valid_from_idx
    ON product_price_history (product_id, valid_from DESC);

INSERT INTO product_price_history (product_id, price_cents, valid_from)
SELECT id, price_cents, created_at FROM products;
