insert into api_keys (site_id, token_prefix, token_hash, scopes, created_at, revoked_at)
select (g % 100) + 1,
       substr(md5('key' || g), 1, 8),
       encode(sha256(('secret-' || g)::bytea), 'hex'),
       case when g % 5 = 0 then array['read', 'write'] else array['read'] end,
       now() - g * interval '1 day',
       case when g % 11 = 0 then now() - interval '1 day' end
from generate_series(1, 220) as g;
