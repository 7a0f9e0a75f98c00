ALTER TABLE messages
    ADD CONSTRAINT messages_body_length CHECK (char_length(body) <= 4000) NOT VALID;
