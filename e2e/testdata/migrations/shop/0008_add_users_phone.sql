ALTER TABLE users ADD COLUMN phone varchar(20);
ALTER TABLE users ADD COLUMN marketing_opt_in boolean NOT NULL DEFAULT false;

CREATE INDEX IF NOT EXISTS users_created_at_idx ON users (created_at);
