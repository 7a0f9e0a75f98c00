BEGIN;

ALTER TABLE rooms ADD COLUMN last_message_at timestamp(6) without time zone;

CREATE OR REPLACE FUNCTION rooms_touch_last_message_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  UPDATE rooms
     SET last_message_at = GREATEST(COALESCE(last_message_at, NEW.created_at), NEW.created_at)
   WHERE id = NEW.room_id;
  RETURN NULL;
END;
$$;

CREATE TRIGGER messages_touch_room
  AFTER INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION rooms_touch_last_message_at();

UPDATE rooms
   SET last_message_at = m.last_at
  FROM (SELECT room_id, max(created_at) AS last_at FROM messages GROUP BY room_id) m
 WHERE m.room_id = rooms.id;

COMMIT;
