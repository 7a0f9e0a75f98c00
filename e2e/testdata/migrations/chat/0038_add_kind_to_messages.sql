CREATE TYPE message_kind AS ENUM ('text', 'system');
ALTER TABLE messages ADD COLUMN kind message_kind NOT NULL DEFAULT 'text';
