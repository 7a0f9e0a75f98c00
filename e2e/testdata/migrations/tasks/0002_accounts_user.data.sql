INSERT INTO "accounts_user" ("password", "last_login", "is_superuser", "username", "first_name", "last_name", "email", "is_staff", "is_active", "date_joined")
SELECT 'pbkdf2_sha256$600000$' || md5('salt' || g) || '$' || md5(g::text),
       CASE WHEN g % 3 = 0 THEN NULL ELSE now() - g * interval '1 hour' END,
       g = 1,
       'member' || g,
       'First' || g,
       'Last' || g,
       CASE WHEN g % 7 = 0 THEN 'Member' || g || '@Example.org' ELSE 'member' || g || '@example.org' END,
       g <= 5,
       g % 50 <> 0,
       now() - g * interval '1 day'
FROM generate_series(1, 300) AS g;
