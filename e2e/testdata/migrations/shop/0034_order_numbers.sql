CREATE SEQUENCE IF NOT EXISTS order_number_seq START WITH 100000 INCREMENT BY 1;

ALTER TABLE orders ADD COLUMN order_number bigint NOT NULL DEFAULT nextval('order_number_seq');
ALTER SEQUENCE order_number_seq OWNED BY orders.order_number;

CREATE UNIQUE INDEX orders_order_number_key ON orders (order_number);
ALTER TABLE orders ADD CONSTRAINT orders_order_number_key UNIQUE USING INDEX orders_order_number_key;
