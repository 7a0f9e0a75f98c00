-- Deploy analytics:ingest_staging to pg

create unlogged table ingest_staging (
    site_domain text not null,
    fingerprint text not null,
    started_at  timestamptz not null,
    path        text not null
);
