-- Deploy analytics:purge_debug_events to pg

begin;
delete from events where kind = 'debug';
insert into app_settings (key, value) values ('debug_events_purged_at', now()::text);
commit;
