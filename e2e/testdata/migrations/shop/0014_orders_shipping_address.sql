ALTER TABLE orders ADD COLUMN shipping_address_id bigint REFERENCES addresses (id) ON DELETE SET NULL;

UPDATE orders
SET shipping_address_id = a.id
FROM addresses a
WHERE a.user_id = orders.user_id
  AND a.kind = 'shipping'
  AND a.is_default;

CREATE INDEX IF NOT EXISTS orders_shipping_address_id_idx ON orders (shipping_address_id);
