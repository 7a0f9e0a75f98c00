BEGIN;

INSERT INTO messages (room_id, user_id, body, body_format, metadata, kind, created_at, updated_at)
SELECT r.id,
       u.id,
       s.text,
       'plain',
       jsonb_build_object('import', 'slack', 'batch', s.batch_id),
       'text',
       to_timestamp(s.ts::double precision)::timestamp,
       to_timestamp(s.ts::double precision)::timestamp
FROM slack_import_rows s
JOIN rooms r ON r.name = s.channel_name
LEFT JOIN users u ON u.handle = s.author_handle;

TRUNCATE slack_import_rows;

COMMIT;
