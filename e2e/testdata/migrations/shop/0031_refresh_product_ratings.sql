-- runner: statements
CREATE INDEX IF NOT EXISTS orders_refunded_placed_at_idx ON orders (placed_at) WHERE status = 'refunded';

REFRESH MATERIALIZED VIEW CONCURRENTLY product_ratings;
