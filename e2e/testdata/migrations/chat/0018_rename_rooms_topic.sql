BEGIN;
ALTER TABLE rooms RENAME COLUMN topic TO description;
ALTER TABLE rooms ALTER COLUMN name TYPE character varying(150);
ALTER TABLE room_members ALTER COLUMN role SET DEFAULT 'member';
COMMIT;
