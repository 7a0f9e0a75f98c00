CREATE TABLE ar_internal_metadata (
    key character varying NOT NULL PRIMARY KEY,
    value character varying,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);

INSERT INTO ar_internal_metadata (key, value, created_at, updated_at)
VALUES ('environment', 'production', now(), now());
INSERT INTO ar_internal_metadata (key, value, created_at, updated_at)
VALUES ('schema_sha1', 'c0ffee1234', now(), now());
