INSERT INTO users (email, full_name, password_hash, status, created_at, updated_at)
SELECT 'user' || g || '@example.com',
       'Customer ' || g,
       'bcrypt:' || md5(g::text) || md5((g * 7)::text),
       CASE WHEN g % 25 = 0 THEN 'suspended'::user_status ELSE 'active'::user_status END,
       now() - g * interval '6 hours',
       now() - g * interval '1 hour'
FROM generate_series(1, 400) AS g;
