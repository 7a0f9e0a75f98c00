CREATE INDEX IF NOT EXISTS orders_user_id_idx ON orders (user_id);
CREATE INDEX IF NOT EXISTS orders_pending_placed_at_idx ON orders (placed_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS order_items_product_id_idx ON order_items (product_id);
