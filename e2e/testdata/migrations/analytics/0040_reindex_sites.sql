-- runner: transaction
-- Deploy analytics:reindex_sites to pg

reindex table sites;
reindex index visitors_site_id_fingerprint_key;
