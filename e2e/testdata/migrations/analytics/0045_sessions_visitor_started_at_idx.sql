-- Deploy analytics:sessions_visitor_started_at_idx to pg
-- Replaces sessions_visitor_id_idx with a wider index, both built online.

create index concurrently sessions_visitor_id_started_at_idx on sessions (visitor_id, started_at desc);

drop index concurrently sessions_visitor_id_idx;
