-- Deploy analytics:sessions to pg
-- requires: sites_and_visitors

begin;

create table sessions (
    id         bigserial primary key,
    visitor_id bigint not null references visitors (id) on delete cascade,
    site_id    integer not null references sites (id) on delete cascade,
    started_at timestamptz not null,
    ended_at   timestamptz,
    page_count integer not null default 0,
    entry_path text not null default '/',
    constraint sessions_ended_after_start check (ended_at is null or ended_at >= started_at)
);

create index sessions_visitor_id_idx on sessions (visitor_id);
create index sessions_site_id_started_at_idx on sessions (site_id, started_at);

commit;
