-- Deploy analytics:events_kind_idx to pg
-- A plain CREATE INDEX, in autocommit: the kind of file written before the
-- team adopted CONCURRENTLY.

create index events_kind_idx on events (kind);
