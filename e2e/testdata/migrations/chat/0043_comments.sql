COMMENT ON TABLE memberships IS 'Which users are in which rooms (was room_members).';
COMMENT ON COLUMN messages.server_received_at IS 'Set by the server when the message arrived.';
COMMENT ON COLUMN rooms.description IS 'Free-form room description (was topic).';
UPDATE ar_internal_metadata SET value = 'd00dfeed5678', updated_at = now() WHERE key = 'schema_sha1';
