-- Deploy analytics:sites_and_visitors to pg
-- requires: app_settings

begin;

create type device_type as enum ('desktop', 'mobile', 'tablet');

create table sites (
    id         serial primary key,
    domain     varchar(253) not null unique,
    name       text not null,
    timezone   text not null,
    public     boolean not null default false,
    created_at timestamptz not null default now()
);

create table visitors (
    id            bigint generated always as identity primary key,
    site_id       integer not null references sites (id) on delete cascade,
    fingerprint   text not null,
    first_seen_at timestamptz not null default now(),
    country       char(2) not null default 'ZZ',
    device        device_type not null default 'desktop',
    constraint visitors_site_id_fingerprint_key unique (site_id, fingerprint)
);

commit;
