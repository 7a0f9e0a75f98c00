-- runner: transaction
-- Deploy analytics:events_site_kind_idx to pg

create index events_site_id_kind_occurred_at_idx on events (site_id, kind, occurred_at);
