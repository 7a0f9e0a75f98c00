insert into sessions (visitor_id, site_id, started_at, ended_at, page_count, entry_path)
select v.id,
       v.site_id,
       now() - g * interval '1 hour',
       case when g % 7 = 0 then null else now() - g * interval '1 hour' + (g % 30) * interval '1 minute' end,
       g % 12 + 1,
       (array['/', '/pricing', '/blog/launch', '/docs/getting-started'])[g % 4 + 1]
from generate_series(1, 300) as g
join visitors v on v.id = (g % 400) + 1;
