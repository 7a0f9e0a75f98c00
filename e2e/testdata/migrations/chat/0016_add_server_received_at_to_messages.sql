BEGIN;
ALTER TABLE messages ADD COLUMN server_received_at timestamp with time zone NOT NULL DEFAULT clock_timestamp();
ALTER TABLE messages ALTER COLUMN server_received_at SET DEFAULT now();
COMMIT;
