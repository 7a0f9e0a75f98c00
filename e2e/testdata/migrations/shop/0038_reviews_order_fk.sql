ALTER TABLE reviews ADD COLUMN order_id bigint;

UPDATE reviews
SET order_id = (
    SELECT min(o.id)
    FROM orders o
    JOIN order_items oi ON oi.order_id = o.id
    WHERE o.user_id = reviews.user_id
      AND oi.product_id = reviews.product_id
)
WHERE order_id IS NULL;

ALTER TABLE reviews
    ADD CONSTRAINT reviews_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE SET NULL NOT VALID;
