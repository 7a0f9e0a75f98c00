CREATE MATERIALIZED VIEW product_ratings AS
SELECT product_id,
       count(*)::integer            AS reviews_count,
       round(avg(rating), 2)        AS average_rating,
       max(created_at)              AS last_review_at
FROM reviews
GROUP BY product_id
WITH NO DATA;

CREATE UNIQUE INDEX product_ratings_product_id_idx ON product_ratings (product_id);

REFRESH MATERIALIZED VIEW product_ratings;
