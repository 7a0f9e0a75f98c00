CREATE INDEX IF NOT EXISTS products_attributes_gin_idx ON products USING gin (attributes jsonb_path_ops);
CREATE INDEX IF NOT EXISTS products_tags_gin_idx ON products USING gin (tags);
CREATE INDEX IF NOT EXISTS products_lower_title_idx ON products (lower(title));
