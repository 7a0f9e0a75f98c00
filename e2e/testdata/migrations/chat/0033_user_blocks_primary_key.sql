-- runner: transaction
ALTER TABLE user_blocks ADD PRIMARY KEY (blocker_id, blocked_id);
ALTER TABLE user_blocks ADD CONSTRAINT user_blocks_not_self CHECK (blocker_id <> blocked_id);
CREATE INDEX index_user_blocks_on_blocked_id ON user_blocks USING btree (blocked_id);
