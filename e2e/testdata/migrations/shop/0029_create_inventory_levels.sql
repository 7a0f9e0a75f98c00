CREATE TABLE IF NOT EXISTS inventory_levels (
    product_id bigint PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    on_hand    integer NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved   integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT inventory_levels_reserved_le_on_hand CHECK (reserved <= on_hand)
);

INSERT INTO inventory_levels (product_id, on_hand)
SELECT id, 100 FROM products;
