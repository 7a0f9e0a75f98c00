ALTER TABLE orders ALTER COLUMN total_cents TYPE bigint;
ALTER TABLE order_items ALTER COLUMN unit_price_cents TYPE bigint;
