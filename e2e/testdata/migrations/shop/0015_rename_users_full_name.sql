ALTER TABLE users RENAME COLUMN full_name TO display_name;
ALTER TABLE users ALTER COLUMN display_name TYPE varchar(200);
