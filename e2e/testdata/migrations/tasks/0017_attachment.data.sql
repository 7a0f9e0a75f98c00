INSERT INTO "tasks_attachment" ("file", "size", "content_type", "uploaded_at", "task_id", "uploaded_by_id")
SELECT 'attachments/2024/' || lpad((g % 12 + 1)::text, 2, '0') || '/file_' || g || '.' || (ARRAY['png', 'pdf', 'txt'])[g % 3 + 1],
       (g * 7919) % 5000000,
       (ARRAY['image/png', 'application/pdf', 'text/plain'])[g % 3 + 1],
       now() - g * interval '2 hours',
       t."id",
       CASE WHEN g % 9 = 0 THEN NULL ELSE (g % 300) + 1 END
FROM generate_series(1, 350) AS g
JOIN "tasks_task" t ON t."id" = (g * 3 % 500) + 1;
