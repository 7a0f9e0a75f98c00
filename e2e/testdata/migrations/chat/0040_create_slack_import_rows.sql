CREATE SEQUENCE slack_import_batch_seq;

CREATE TABLE slack_import_rows (
    id bigserial PRIMARY KEY,
    batch_id bigint NOT NULL DEFAULT nextval('slack_import_batch_seq'),
    channel_name text NOT NULL,
    author_handle text,
    ts numeric(16, 6) NOT NULL,
    text text NOT NULL
);
