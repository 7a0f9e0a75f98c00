INSERT INTO "tasks_membership" ("workspace_id", "user_id", "role", "joined_at")
SELECT w."id", u."id", CASE WHEN g % 10 = 0 THEN 'admin' ELSE 'member' END, now() - g * interval '1 day'
FROM generate_series(1, 360) AS g
JOIN "tasks_workspace" w ON w."id" = (g % 120) + 1
JOIN "accounts_user" u ON u."id" = ((g + 150) % 300) + 1
WHERE u."id" <> w."owner_id";
