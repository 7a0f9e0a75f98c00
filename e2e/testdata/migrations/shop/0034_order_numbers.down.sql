ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_order_number_key;
ALTER TABLE orders DROP COLUMN IF EXISTS order_number;
DROP SEQUENCE IF EXISTS order_number_seq;
