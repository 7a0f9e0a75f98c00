-- Deploy analytics:events_occurred_at_idx to pg
-- (no transaction: concurrent index build)

create index concurrently if not exists events_occurred_at_idx on events (occurred_at);
