-- Deploy analytics:events_occurred_on_range to pg
-- requires: events_occurred_on

alter table events add constraint events_occurred_on_range check (occurred_on >= date '2000-01-01');
