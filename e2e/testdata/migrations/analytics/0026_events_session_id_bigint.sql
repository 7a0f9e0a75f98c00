-- runner: transaction
-- Deploy analytics:events_session_id_bigint to pg

alter table events alter column session_id type bigint;
