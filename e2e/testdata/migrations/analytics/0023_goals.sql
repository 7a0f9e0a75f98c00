-- runner: transaction
-- Deploy analytics:goals to pg

create table goals (
    id         serial primary key,
    site_id    integer not null references sites (id) on delete cascade,
    name       varchar(100) not null,
    match_type text not null check (match_type in ('path', 'event')),
    pattern    text not null,
    created_at timestamptz not null default now(),
    unique (site_id, name)
);

create table goal_conversions (
    goal_id       integer not null references goals (id) on delete cascade,
    visitor_id    bigint not null references visitors (id) on delete cascade,
    converted_at  timestamptz not null,
    revenue_cents integer
);

create index goal_conversions_goal_id_converted_at_idx on goal_conversions (goal_id, converted_at);
