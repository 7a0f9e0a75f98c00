insert into page_views (site_id, visitor_id, path, referrer, device, viewed_on, viewed_at, duration_ms)
select (g % 100) + 1,
       case when g % 12 = 0 then null else (g % 400) + 1 end,
       (array['/', '/pricing', '/blog/launch', '/docs/getting-started', '/about'])[g % 5 + 1],
       case when g % 3 = 0 then 'https://search.example.com/?q=' || g end,
       (array['desktop', 'mobile', 'tablet'])[g % 3 + 1]::device_type,
       date '2024-01-01' + (g * 3 % 730),
       (date '2024-01-01' + (g * 3 % 730))::timestamptz + (g % 86400) * interval '1 second',
       (g * 37) % 120000
from generate_series(1, 480) as g;
