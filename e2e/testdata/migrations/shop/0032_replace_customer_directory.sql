DROP VIEW IF EXISTS customer_directory;

CREATE VIEW customer_order_stats AS
SELECT u.id                          AS user_id,
       u.email,
       count(o.id)                   AS orders_count,
       coalesce(sum(o.total_cents), 0) AS lifetime_cents,
       max(o.placed_at)              AS last_order_at
FROM users u
LEFT JOIN orders o ON o.user_id = u.id AND o.status <> 'cancelled'
GROUP BY u.id, u.email;

DROP TABLE IF EXISTS legacy_wishlists;
