ALTER TABLE products ADD COLUMN search_text text;

UPDATE products SET search_text = lower(title || ' ' || sku);

ALTER TABLE products ALTER COLUMN search_text SET NOT NULL;

DROP INDEX IF EXISTS products_lower_title_idx;
CREATE INDEX products_search_text_idx ON products (search_text text_pattern_ops);
