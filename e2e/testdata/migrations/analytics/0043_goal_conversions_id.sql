-- runner: transaction
-- Deploy analytics:goal_conversions_id to pg

alter table goal_conversions add column id bigint generated always as identity;
alter table goal_conversions add primary key (id);
alter table goal_conversions alter column revenue_cents type bigint;
