ALTER TABLE users ADD COLUMN avatar_blob_key character varying(64);
UPDATE users SET avatar_blob_key = substr(md5(avatar_url), 1, 32) WHERE avatar_url IS NOT NULL;
ALTER TABLE users DROP COLUMN avatar_url;
ALTER TABLE reactions DROP CONSTRAINT reactions_user_id_fkey;
ALTER TABLE reactions ADD CONSTRAINT fk_rails_9f02fc96a0 FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
