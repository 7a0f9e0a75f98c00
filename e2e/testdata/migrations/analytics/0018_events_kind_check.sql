-- Deploy analytics:events_kind_check to pg

alter table events add constraint events_kind_not_blank check (kind <> '') not valid;
