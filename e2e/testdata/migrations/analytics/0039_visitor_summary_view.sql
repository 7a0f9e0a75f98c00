-- Deploy analytics:visitor_summary to pg

create view visitor_summary as
select v.id         as visitor_id,
       v.site_id,
       v.country,
       count(s.id)  as sessions,
       coalesce(sum(s.pageviews), 0) as pageviews,
       max(s.started_at) as last_seen_at
from visitors v
left join sessions s on s.visitor_id = v.id
group by v.id, v.site_id, v.country;
