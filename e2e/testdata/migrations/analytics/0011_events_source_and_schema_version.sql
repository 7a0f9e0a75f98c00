-- runner: transaction
-- Deploy analytics:events_source to pg
-- requires: events

alter table events add column source varchar(32);
alter table events add column schema_version smallint not null default 1;
