BEGIN;

CREATE TYPE room_kind AS ENUM ('public', 'private', 'direct');

CREATE TABLE rooms (
    id bigserial PRIMARY KEY,
    name character varying(100) NOT NULL,
    topic text,
    kind room_kind NOT NULL DEFAULT 'public',
    created_by_id bigint,
    archived_at timestamp(6) without time zone,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL,
    CONSTRAINT fk_rails_4f1c2a9b7e FOREIGN KEY (created_by_id) REFERENCES users (id)
);

CREATE INDEX index_rooms_on_created_by_id ON rooms USING btree (created_by_id);
CREATE INDEX index_rooms_on_kind ON rooms USING btree (kind) WHERE archived_at IS NULL;

COMMIT;
