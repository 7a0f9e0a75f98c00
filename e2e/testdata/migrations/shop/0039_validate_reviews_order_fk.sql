ALTER TABLE reviews VALIDATE CONSTRAINT reviews_order_id_fkey;

CREATE INDEX reviews_order_id_idx ON reviews (order_id) WHERE order_id IS NOT NULL;

DROP INDEX orders_pending_placed_at_idx;
CREATE INDEX orders_status_placed_at_idx ON orders (status, placed_at);
