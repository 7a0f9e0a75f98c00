-- Deploy analytics:daily_site_stats to pg
-- requires: page_views

begin;

create materialized view daily_site_stats as
select site_id,
       viewed_on,
       count(*)                   as pageviews,
       count(distinct visitor_id) as visitors,
       avg(duration_ms)::integer  as avg_duration_ms
from page_views
group by site_id, viewed_on
with no data;

create unique index daily_site_stats_site_id_viewed_on_idx on daily_site_stats (site_id, viewed_on);

refresh materialized view daily_site_stats;

commit;
