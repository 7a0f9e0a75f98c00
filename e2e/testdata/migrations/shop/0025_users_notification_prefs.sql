ALTER TABLE users ADD COLUMN notification_prefs jsonb NOT NULL DEFAULT '{"email": true, "sms": false}'::jsonb;

UPDATE users
SET notification_prefs = jsonb_set(notification_prefs, '{email}', to_jsonb(marketing_opt_in))
WHERE status = 'active';

ALTER TABLE users DROP COLUMN marketing_opt_in;
