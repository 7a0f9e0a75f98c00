CREATE INDEX CONCURRENTLY index_messages_on_metadata ON messages USING gin (metadata jsonb_path_ops);
CREATE INDEX CONCURRENTLY index_users_on_lower_display_name ON users USING btree (lower(display_name));
