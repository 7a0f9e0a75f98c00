BEGIN;

CREATE MATERIALIZED VIEW room_activity_daily AS
SELECT room_id,
       created_at::date            AS day,
       count(*)                    AS messages_count,
       count(DISTINCT user_id)     AS active_users
FROM messages
GROUP BY room_id, created_at::date;

CREATE UNIQUE INDEX index_room_activity_daily_on_room_id_and_day
    ON room_activity_daily USING btree (room_id, day);

COMMIT;
