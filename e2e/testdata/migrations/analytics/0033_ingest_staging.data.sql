insert into ingest_staging (site_domain, fingerprint, started_at, path)
select 'site' || ((g % 100) + 1) || '.example.net',
       md5('visitor-' || g),
       now() - g * interval '15 minutes',
       '/landing/' || g
from generate_series(1, 160) as g;
