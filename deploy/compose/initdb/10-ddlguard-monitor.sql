-- The role ddlguard's lock monitor connects as (DDLGUARD_MONITOR_DSN):
-- pg_monitor lets it read pg_locks and every session in pg_stat_activity.
-- It needs nothing else.
CREATE ROLE ddlguard_monitor LOGIN PASSWORD 'monitor-password';
GRANT pg_monitor TO ddlguard_monitor;
