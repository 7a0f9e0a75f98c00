ALTER TABLE addresses ALTER COLUMN postal_code TYPE text;
ALTER TABLE addresses ALTER COLUMN country DROP DEFAULT;
ALTER TABLE users ALTER COLUMN phone TYPE varchar(32);
ALTER TABLE addresses ADD COLUMN region text;
