DROP INDEX CONCURRENTLY IF EXISTS index_messages_on_room_id;
