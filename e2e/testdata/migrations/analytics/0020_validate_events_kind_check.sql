-- Deploy analytics:validate_events_kind_check to pg

alter table events validate constraint events_kind_not_blank;
