-- Backfill a large slice of historical events (only in the large run).
insert into events (site_id, visitor_id, session_id, kind, occurred_at, payload, properties)
select (g % 100) + 1,
       case when g % 15 = 0 then null else (g % 400) + 1 end,
       (g % 300) + 1,
       (array['pageview', 'pageview', 'click', 'signup', 'purchase', 'debug'])[g % 6 + 1],
       timestamptz '2024-01-01 00:00:00+00' + g * interval '3 minutes',
       md5(g::text) || md5((g * 31)::text),
       case when g % 50 = 0 then jsonb_build_object('campaign', 'spring-' || (g % 7)) end
from generate_series(1, 150000) as g;

analyze events;
