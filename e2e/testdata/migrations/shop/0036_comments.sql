COMMENT ON TABLE users IS 'Registered shop customers.';
COMMENT ON COLUMN users.display_name IS 'Name shown on invoices and reviews.';
COMMENT ON TABLE shopping_carts IS 'Anonymous and signed-in carts, expire after 30 days.';
COMMENT ON COLUMN orders.order_number IS 'Human facing order number, printed on packing slips.';
COMMENT ON MATERIALIZED VIEW product_ratings IS 'Refreshed by the nightly job.';
