-- Deploy analytics:visitors_public_id_constraint to pg

begin;
alter table visitors add constraint visitors_public_id_key unique using index visitors_public_id_key;
commit;
