-- Deploy analytics:device_type_tv to pg
-- (enum values cannot be added and used in one transaction)

alter type device_type add value if not exists 'tv' after 'tablet';
