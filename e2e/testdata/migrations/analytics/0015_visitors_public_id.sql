-- Deploy analytics:visitors_public_id to pg

alter table visitors add column public_id uuid not null default gen_random_uuid();

create unique index concurrently visitors_public_id_key on visitors (public_id);
