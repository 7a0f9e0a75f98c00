DROP INDEX IF EXISTS users_created_at_idx;
ALTER TABLE users DROP COLUMN IF EXISTS marketing_opt_in;
ALTER TABLE users DROP COLUMN IF EXISTS phone;
