-- runner: transaction
-- Deploy analytics:events_occurred_on_not_null to pg
-- requires: events_occurred_on

alter table events alter column occurred_on set not null;
