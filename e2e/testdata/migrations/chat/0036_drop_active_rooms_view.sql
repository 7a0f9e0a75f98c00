DROP VIEW active_rooms;
DROP TABLE IF EXISTS legacy_chat_logs;
