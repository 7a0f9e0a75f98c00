-- Deploy analytics:app_settings to pg

begin;

create table app_settings (
    key        text primary key,
    value      text not null,
    updated_at timestamptz not null default now()
);

insert into app_settings (key, value) values ('retention_days', '395');
insert into app_settings (key, value) values ('ingest_enabled', 'true');

commit;
