insert into sites (domain, name, timezone, public, created_at)
select 'site' || g || '.example.net',
       'Site number ' || g,
       (array['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo'])[g % 4 + 1],
       g % 3 = 0,
       now() - g * interval '1 week'
from generate_series(1, 100) as g;

insert into visitors (site_id, fingerprint, first_seen_at, country, device)
select (g % 100) + 1,
       md5('visitor-' || g),
       now() - g * interval '2 hours',
       (array['US', 'DE', 'FR', 'JP', 'BR', 'ZZ'])[g % 6 + 1],
       (array['desktop', 'mobile', 'tablet'])[g % 3 + 1]::device_type
from generate_series(1, 400) as g;
