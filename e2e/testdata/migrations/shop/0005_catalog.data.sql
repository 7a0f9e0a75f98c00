INSERT INTO categories (parent_id, slug, name)
SELECT NULL, 'department-' || g, 'Department ' || g
FROM generate_series(1, 5) AS g;

INSERT INTO categories (parent_id, slug, name)
SELECT ((g - 1) % 5) + 1, 'category-' || g, 'Category ' || g
FROM generate_series(6, 120) AS g;

INSERT INTO products (category_id, sku, title, price_cents, attributes, tags, created_at)
SELECT (g % 120) + 1,
       'SKU-' || lpad(g::text, 6, '0'),
       'Product ' || g,
       (g * 137) % 10000 + 99,
       jsonb_build_object('color', (ARRAY['red', 'green', 'blue'])[g % 3 + 1], 'weight_g', g * 10),
       ARRAY['tag' || (g % 7), 'tag' || (g % 11)],
       now() - g * interval '1 day'
FROM generate_series(1, 300) AS g;
