-- Deploy analytics:load_ingest_staging to pg
-- requires: ingest_staging

begin;

lock table sessions in share row exclusive mode;

insert into sessions (visitor_id, site_id, started_at, page_count, entry_path)
select v.id, s.id, st.started_at, 1, st.path
from ingest_staging st
join sites s on s.domain = st.site_domain
join visitors v on v.site_id = s.id and v.fingerprint = st.fingerprint;

truncate ingest_staging;

commit;
