-- runner: transaction
LOCK TABLE rooms IN SHARE ROW EXCLUSIVE MODE;

UPDATE rooms
SET created_by_id = (SELECT min(user_id) FROM memberships WHERE memberships.room_id = rooms.id)
WHERE created_by_id IS NULL;

UPDATE rooms SET created_by_id = (SELECT min(id) FROM users) WHERE created_by_id IS NULL;

ALTER TABLE rooms ALTER COLUMN created_by_id SET NOT NULL;
