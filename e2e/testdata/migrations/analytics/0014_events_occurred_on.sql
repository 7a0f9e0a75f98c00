-- Deploy analytics:events_occurred_on to pg
-- requires: events

begin;

alter table events add column occurred_on date;
update events set occurred_on = (occurred_at at time zone 'UTC')::date;

commit;
