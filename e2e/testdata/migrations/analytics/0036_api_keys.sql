-- Deploy analytics:api_keys to pg

begin;

create sequence api_keys_id_seq as integer start with 1000;

create table api_keys (
    id           integer primary key default nextval('api_keys_id_seq'),
    site_id      integer not null references sites (id) on delete cascade,
    token_prefix varchar(8) not null,
    token_hash   text not null unique,
    scopes       text[] not null default array['read']::text[],
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz
);

alter sequence api_keys_id_seq owned by api_keys.id;

create index api_keys_site_id_active_idx on api_keys (site_id) where revoked_at is null;

insert into app_settings (key, value) values ('api_keys_enabled', 'true');

commit;
