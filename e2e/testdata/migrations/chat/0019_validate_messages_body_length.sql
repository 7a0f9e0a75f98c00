ALTER TABLE messages VALIDATE CONSTRAINT messages_body_length;
