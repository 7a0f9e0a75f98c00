ALTER TABLE reviews ADD COLUMN moderation_status text NOT NULL DEFAULT 'published';
ALTER TABLE reviews ADD CONSTRAINT reviews_moderation_status_check
    CHECK (moderation_status IN ('pending', 'published', 'rejected'));

DELETE FROM reviews WHERE body LIKE '%spam.example%';

CREATE INDEX IF NOT EXISTS reviews_pending_idx ON reviews (created_at) WHERE moderation_status = 'pending';

REFRESH MATERIALIZED VIEW product_ratings;
