-- runner: transaction
-- Deploy analytics:sites_defaults to pg

alter table sites alter column timezone set default 'UTC';
alter table sites add column retention_days integer not null default 395;
alter table sites add constraint sites_retention_days_check check (retention_days between 30 and 3650);
alter table goals alter column name type varchar(200);
