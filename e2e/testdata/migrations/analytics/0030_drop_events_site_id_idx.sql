-- Deploy analytics:drop_events_site_id_idx to pg
-- events_site_id_kind_occurred_at_idx covers it.

drop index concurrently if exists events_site_id_idx;
