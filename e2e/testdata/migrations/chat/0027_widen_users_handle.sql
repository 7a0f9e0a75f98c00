ALTER TABLE users ALTER COLUMN handle TYPE character varying(50);
ALTER TABLE users ALTER COLUMN display_name TYPE text;
