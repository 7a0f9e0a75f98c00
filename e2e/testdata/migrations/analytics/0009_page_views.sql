-- Deploy analytics:page_views to pg
-- requires: sites_and_visitors

begin;

create table page_views (
    id          bigserial not null,
    site_id     integer not null references sites (id),
    visitor_id  bigint,
    path        text not null,
    referrer    text,
    device      device_type not null default 'desktop',
    viewed_on   date not null,
    viewed_at   timestamptz not null,
    duration_ms integer
) partition by range (viewed_on);

create table page_views_2024_q1 partition of page_views for values from ('2024-01-01') to ('2024-04-01');
create table page_views_2024_q2 partition of page_views for values from ('2024-04-01') to ('2024-07-01');
create table page_views_2024_q3 partition of page_views for values from ('2024-07-01') to ('2024-10-01');
create table page_views_2024_q4 partition of page_views for values from ('2024-10-01') to ('2025-01-01');

create table page_views_2025 partition of page_views
    for values from ('2025-01-01') to ('2026-01-01')
    partition by list (device);
create table page_views_2025_desktop partition of page_views_2025 for values in ('desktop');
create table page_views_2025_mobile partition of page_views_2025 for values in ('mobile', 'tablet');
create table page_views_2025_other partition of page_views_2025 default;

commit;
