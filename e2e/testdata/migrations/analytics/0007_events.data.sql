insert into events (site_id, visitor_id, session_id, kind, occurred_at, payload, properties)
select (g % 100) + 1,
       case when g % 15 = 0 then null else (g % 400) + 1 end,
       (g % 300) + 1,
       (array['pageview', 'click', 'signup', 'purchase', 'debug'])[g % 5 + 1],
       now() - g * interval '11 minutes',
       md5(g::text) || md5((g + 1)::text),
       case when g % 4 = 0 then jsonb_build_object('button', 'cta-' || (g % 3), 'ab', g % 2) end
from generate_series(1, 400) as g;
