INSERT INTO slack_import_rows (batch_id, channel_name, author_handle, ts, text)
SELECT 1,
       'room-' || ((g % 200) + 1),
       'user_' || ((g * 3 % 400) + 1),
       extract(epoch FROM now() - g * interval '1 day')::numeric(16, 6),
       'imported from slack #' || g
FROM generate_series(1, 180) AS g;
