INSERT INTO addresses (user_id, kind, line1, city, postal_code, country, is_default)
SELECT u.id, 'shipping', u.id || ' Main Street', 'Springfield', lpad((10000 + u.id)::text, 5, '0'), 'US', true
FROM users u;

INSERT INTO addresses (user_id, kind, line1, line2, city, postal_code, country, is_default)
SELECT u.id, 'billing', u.id || ' Market Road', 'Suite ' || (u.id % 40), 'Shelbyville', lpad((20000 + u.id)::text, 5, '0'), 'US', true
FROM users u
WHERE u.id % 4 = 0;
