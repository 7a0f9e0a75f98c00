-- Lock facts corpus for TestLockFacts (e2e/lockfacts_test.go).
--
-- Each entry is one SQL statement, checked against a real server: which
-- relation locks it holds at the end of the statement, which relations got
-- new storage (relfilenode), which it read in full. The fixtures (lf_*
-- tables, created by lfFixtures in lockfacts_test.go) are documented there.
--
-- Entries are separated by a line "-- next". Marker lines inside an entry:
--   -- min_version: N        run only on servers of major version >= N
--   -- max_version: N        run only on servers of major version <= N
--   -- expect_error[: text]  the statement must fail on the fixtures (the
--                            server's message must contain text, if given);
--                            its locks cannot be observed (the aborted
--                            transaction releases nothing until ROLLBACK but
--                            pg_locks can no longer be read)
--   -- setup: SQL           run before the statement, in the same
--                            transaction (outside one for no_transaction);
--                            must not lock the relations the statement locks
--                            (locks are the difference after/before the
--                            statement)
--   -- cleanup: SQL         no_transaction only: run after the statement
--   -- no_transaction        cannot run in a transaction block: run in
--                            autocommit while another session holds SHARE
--                            UPDATE EXCLUSIVE on every fixture table, so the
--                            first table lock it asks for (of that strength or
--                            more) is seen waiting; relfilenode changes are
--                            recorded once it finished. Runs after all
--                            transactional entries, in corpus order.
--   -- skip_observe          listed for the guard, not run
--   -- catalog_locks: a, b   relations the statement locks without naming
--                            them (found through the catalog); the guard
--                            cannot predict them from the SQL text, so their
--                            locks (and their indexes' and partitions') are
--                            reported but not a mismatch
--   -- catalog_work          whether the server rewrites depends on catalog
--                            facts the SQL does not show (the column's old
--                            type, the current tablespace or access method):
--                            a predicted rewrite the server did not do is
--                            accepted (a missed one never is)
-- Any other "--" line is a note.

-- next
-- Baseline: a read takes ACCESS SHARE only.
SELECT count(*) FROM lf_main;
-- next
-- Baseline: a write takes ROW EXCLUSIVE on the table and its indexes.
UPDATE lf_main SET h = h WHERE id = 1;

-- ===================================================== CREATE / DROP INDEX
-- next
CREATE INDEX lf_main_c_idx ON lf_main (c);
-- next
CREATE UNIQUE INDEX lf_main_d_uidx ON lf_main (d);
-- next
CREATE INDEX lf_main_a_partial_idx ON lf_main (a) WHERE h > 50000;
-- next
CREATE INDEX lf_main_lower_d_idx ON lf_main (lower(d));
-- next
CREATE INDEX lf_main_a_incl_idx ON lf_main (a) INCLUDE (b, c);
-- next
-- Schema-qualified name: the guard's relation is "public.lf_main".
CREATE INDEX ON public.lf_main (e);
-- next
-- On a partitioned table: every partition gets an index of its own.
CREATE INDEX lf_part_v_idx ON lf_part (v);
-- next
-- ON ONLY a partitioned table: an invalid index on the parent alone, built
-- on nothing (the guard knows it from the facts, which this corpus does not
-- give it).
-- catalog_work
CREATE INDEX lf_part_only_idx ON ONLY lf_part (k);
-- next
-- A partition's index attached to the parent's: ACCESS EXCLUSIVE on it,
-- SHARE UPDATE EXCLUSIVE on the parent's index, ACCESS SHARE on both tables.
-- catalog_locks: lf_ipart, lf_ipart_1
ALTER INDEX lf_ipart_id_idx ATTACH PARTITION lf_ipart_1_id_idx;
-- next
-- Cannot run in a transaction block.
-- no_transaction
-- cleanup: DROP INDEX IF EXISTS lf_main_cic_idx
CREATE INDEX CONCURRENTLY lf_main_cic_idx ON lf_main (h);
-- next
-- no_transaction
-- cleanup: DROP INDEX IF EXISTS lf_main_cuic_idx
CREATE UNIQUE INDEX CONCURRENTLY lf_main_cuic_idx ON lf_main (d);
-- next
DROP INDEX lf_main_b_idx;
-- next
DROP INDEX public.lf_main_b_idx;
-- next
-- no_transaction
-- setup: CREATE INDEX lf_main_dic_idx ON lf_main (h)
DROP INDEX CONCURRENTLY lf_main_dic_idx;
-- next
REINDEX INDEX lf_main_a_idx;
-- next
REINDEX TABLE lf_main;
-- next
-- no_transaction
REINDEX INDEX CONCURRENTLY lf_main_a_idx;
-- next
-- no_transaction
REINDEX TABLE CONCURRENTLY lf_ref;
-- next
ALTER INDEX lf_main_a_idx RENAME TO lf_main_a_idx2;
-- next
ALTER INDEX lf_main_a_idx SET (fillfactor = 70);

-- ============================================================= ADD COLUMN
-- next
ALTER TABLE lf_main ADD COLUMN x int;
-- next
ALTER TABLE public.lf_main ADD COLUMN x int;
-- next
ALTER TABLE lf_main ADD COLUMN x int DEFAULT 42;
-- next
ALTER TABLE lf_main ADD COLUMN x int NOT NULL DEFAULT 0;
-- next
-- now() is stable: evaluated once, stored as the "missing" value.
ALTER TABLE lf_main ADD COLUMN x timestamptz DEFAULT now();
-- next
ALTER TABLE lf_main ADD COLUMN x timestamptz DEFAULT clock_timestamp();
-- next
ALTER TABLE lf_main ADD COLUMN x float8 DEFAULT random();
-- next
ALTER TABLE lf_main ADD COLUMN x uuid DEFAULT gen_random_uuid();
-- next
ALTER TABLE lf_main ADD COLUMN x serial;
-- next
ALTER TABLE lf_main ADD COLUMN x bigserial;
-- next
ALTER TABLE lf_main ADD COLUMN x bigint GENERATED ALWAYS AS IDENTITY;
-- next
ALTER TABLE lf_main ADD COLUMN x bigint GENERATED BY DEFAULT AS IDENTITY;
-- next
ALTER TABLE lf_main ADD COLUMN x int GENERATED ALWAYS AS (a * 2) STORED;
-- next
-- PostgreSQL 18: virtual generated columns (the default kind there).
-- min_version: 18
ALTER TABLE lf_main ADD COLUMN x int GENERATED ALWAYS AS (a * 2) VIRTUAL;
-- next
-- min_version: 18
ALTER TABLE lf_main ADD COLUMN x int GENERATED ALWAYS AS (a * 2);
-- next
-- Before 18 a generated column must say STORED.
-- max_version: 17
-- expect_error
ALTER TABLE lf_main ADD COLUMN x int GENERATED ALWAYS AS (a * 2);
-- next
ALTER TABLE lf_main ADD COLUMN x int CHECK (x > 0);
-- next
ALTER TABLE lf_main ADD COLUMN x int UNIQUE;
-- next
ALTER TABLE lf_nopk ADD COLUMN pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
-- next
-- The new column is all NULL: a primary key on it fails on a non-empty table.
-- expect_error
ALTER TABLE lf_nopk ADD COLUMN pk int PRIMARY KEY;
-- next
ALTER TABLE lf_main ADD COLUMN x int REFERENCES lf_ref (id);
-- next
ALTER TABLE lf_empty ADD COLUMN x int NOT NULL;
-- next
-- expect_error: contains null values
ALTER TABLE lf_main ADD COLUMN x int NOT NULL;
-- next
-- Several subcommands: the strongest lock and the most work win.
ALTER TABLE lf_main ADD COLUMN x int, ADD COLUMN y float8 DEFAULT random();
-- next
ALTER TABLE lf_main ADD COLUMN IF NOT EXISTS a int;

-- ============================================= DROP COLUMN, DEFAULT, NOT NULL
-- next
ALTER TABLE lf_main DROP COLUMN d;
-- next
-- b is indexed: the index goes with it.
ALTER TABLE lf_main DROP COLUMN b;
-- next
ALTER TABLE lf_main ALTER COLUMN a SET DEFAULT 1;
-- next
ALTER TABLE lf_main ALTER COLUMN a DROP DEFAULT;
-- next
-- No constraint proves a IS NOT NULL: the table is scanned.
ALTER TABLE lf_main ALTER COLUMN a SET NOT NULL;
-- next
-- The valid CHECK (h IS NOT NULL) proves it: no scan.
ALTER TABLE lf_main ALTER COLUMN h SET NOT NULL;
-- next
ALTER TABLE lf_main ALTER COLUMN g DROP NOT NULL;
-- next
-- PostgreSQL 18: NOT NULL as a named constraint, and NOT VALID.
-- min_version: 18
ALTER TABLE lf_main ADD CONSTRAINT lf_main_a_not_null NOT NULL a;
-- next
-- min_version: 18
ALTER TABLE lf_main ADD CONSTRAINT lf_main_a_not_null NOT NULL a NOT VALID;

-- ============================================================ ALTER COLUMN TYPE
-- next
ALTER TABLE lf_main ALTER COLUMN a TYPE bigint;
-- next
ALTER TABLE lf_main ALTER COLUMN id TYPE bigint;
-- next
-- Longer varchar: binary coercible, no rewrite (b is indexed).
-- catalog_work
ALTER TABLE lf_main ALTER COLUMN b TYPE varchar(20);
-- next
-- Shorter varchar: every value must be checked.
ALTER TABLE lf_main ALTER COLUMN c TYPE varchar(10);
-- next
-- catalog_work
ALTER TABLE lf_main ALTER COLUMN b TYPE text;
-- next
ALTER TABLE lf_main ALTER COLUMN d TYPE varchar(50);
-- next
-- catalog_work
ALTER TABLE lf_main ALTER COLUMN e TYPE numeric(12,2);
-- next
ALTER TABLE lf_main ALTER COLUMN e TYPE numeric(10,3);
-- next
-- In UTC a timestamp already is the timestamptz value: no rewrite (12+).
-- setup: SET LOCAL TimeZone = 'UTC'
-- catalog_work
ALTER TABLE lf_main ALTER COLUMN f TYPE timestamptz;
-- next
-- Anywhere else every value changes.
-- setup: SET LOCAL TimeZone = 'America/New_York'
ALTER TABLE lf_main ALTER COLUMN f TYPE timestamptz;
-- next
ALTER TABLE lf_main ALTER COLUMN g TYPE text;
-- next
ALTER TABLE lf_main ALTER COLUMN a TYPE bigint USING a::bigint;

-- ========================================== column options, storage, statistics
-- next
ALTER TABLE lf_main ALTER COLUMN a SET STATISTICS 500;
-- next
ALTER TABLE lf_main ALTER COLUMN d SET STORAGE EXTERNAL;
-- next
-- min_version: 14
ALTER TABLE lf_main ALTER COLUMN d SET COMPRESSION pglz;
-- next
ALTER TABLE lf_main ALTER COLUMN a SET (n_distinct = 100);
-- next
ALTER TABLE lf_gen ALTER COLUMN y DROP EXPRESSION;
-- next
-- min_version: 17
ALTER TABLE lf_gen ALTER COLUMN y SET EXPRESSION AS (x * 3);

-- ============================================================== constraints
-- next
ALTER TABLE lf_main ADD CONSTRAINT lf_main_g_positive CHECK (g > 0);
-- next
ALTER TABLE lf_main ADD CONSTRAINT lf_main_g_positive CHECK (g > 0) NOT VALID;
-- next
-- min_version: 18
ALTER TABLE lf_main ADD CONSTRAINT lf_main_g_positive CHECK (g > 0) NOT ENFORCED;
-- next
ALTER TABLE lf_main VALIDATE CONSTRAINT lf_main_a_positive;
-- next
ALTER TABLE lf_main ADD CONSTRAINT lf_main_a_fkey FOREIGN KEY (a) REFERENCES lf_ref (id);
-- next
ALTER TABLE lf_main ADD CONSTRAINT lf_main_a_fkey FOREIGN KEY (a) REFERENCES lf_ref (id) NOT VALID;
-- next
ALTER TABLE lf_child VALIDATE CONSTRAINT lf_child_ref2_fkey;
-- next
ALTER TABLE lf_main ADD CONSTRAINT lf_main_d_key UNIQUE (d);
-- next
ALTER TABLE lf_nopk ADD PRIMARY KEY (id);
-- next
ALTER TABLE lf_main ADD CONSTRAINT lf_main_g_key UNIQUE USING INDEX lf_main_g_uidx;
-- next
-- id is nullable: the primary key makes it NOT NULL, which needs a scan.
ALTER TABLE lf_nopk ADD CONSTRAINT lf_nopk_pkey PRIMARY KEY USING INDEX lf_nopk_id_uidx;
-- next
ALTER TABLE lf_main ADD CONSTRAINT lf_main_id_excl EXCLUDE USING btree (id WITH =);
-- next
ALTER TABLE lf_main DROP CONSTRAINT lf_main_a_positive;
-- next
ALTER TABLE lf_main DROP CONSTRAINT lf_main_pkey;
-- next
-- The foreign key's triggers on lf_ref go too.
-- catalog_locks: lf_ref
ALTER TABLE lf_child DROP CONSTRAINT lf_child_ref_id_fkey;
-- next
ALTER TABLE lf_main RENAME CONSTRAINT lf_main_a_positive TO lf_main_a_pos;

-- ================================================= rename, schema, storage
-- next
ALTER TABLE lf_main RENAME TO lf_main2;
-- next
ALTER TABLE lf_main RENAME COLUMN a TO a2;
-- next
ALTER TABLE lf_main SET SCHEMA lf_other;
-- next
-- lf_main already is in pg_default: a no-op on storage, but still locked.
-- catalog_work
ALTER TABLE lf_main SET TABLESPACE pg_default;
-- next
-- lf_ts is an in-place tablespace (allow_in_place_tablespaces): the files
-- are copied block by block, no row is read.
ALTER TABLE lf_main SET TABLESPACE lf_ts;
-- next
ALTER INDEX lf_main_a_idx SET TABLESPACE lf_ts;
-- next
ALTER TABLE lf_main SET UNLOGGED;
-- next
ALTER TABLE lf_unlogged SET LOGGED;
-- next
-- lf_main already is heap.
-- min_version: 15
-- catalog_work
ALTER TABLE lf_main SET ACCESS METHOD heap;
-- next
-- min_version: 17
-- catalog_work
ALTER TABLE lf_main SET ACCESS METHOD DEFAULT;

-- ============================================================ reloptions
-- next
ALTER TABLE lf_main SET (fillfactor = 70);
-- next
ALTER TABLE lf_main SET (autovacuum_enabled = false);
-- next
ALTER TABLE lf_main SET (parallel_workers = 2);
-- next
ALTER TABLE lf_main SET (toast_tuple_target = 256);
-- next
ALTER TABLE lf_main RESET (fillfactor);

-- ============================================ cluster, triggers, RLS, identity
-- next
ALTER TABLE lf_main CLUSTER ON lf_main_a_idx;
-- next
ALTER TABLE lf_main SET WITHOUT CLUSTER;
-- next
ALTER TABLE lf_main DISABLE TRIGGER lf_main_trg;
-- next
ALTER TABLE lf_main ENABLE TRIGGER lf_main_trg;
-- next
ALTER TABLE lf_main ENABLE ROW LEVEL SECURITY;
-- next
ALTER TABLE lf_main REPLICA IDENTITY FULL;
-- next
ALTER TABLE lf_main OWNER TO app_trust;

-- ============================================= inheritance and partitions
-- next
ALTER TABLE lf_inh_child NO INHERIT lf_inh_parent;
-- next
ALTER TABLE lf_inh_other INHERIT lf_inh_parent;
-- next
-- No constraint implies the partition bound: lf_part_2 is scanned.
ALTER TABLE lf_part ATTACH PARTITION lf_part_2 FOR VALUES FROM (1000) TO (2000);
-- next
-- lf_part_3's CHECK implies the bound: no scan.
ALTER TABLE lf_part ATTACH PARTITION lf_part_3 FOR VALUES FROM (2000) TO (3000);
-- next
ALTER TABLE lf_part DETACH PARTITION lf_part_1;
-- next
-- min_version: 14
-- no_transaction
-- cleanup: ALTER TABLE lf_part ATTACH PARTITION lf_part_1 FOR VALUES FROM (0) TO (1000)
ALTER TABLE lf_part DETACH PARTITION lf_part_1 CONCURRENTLY;
-- next
-- The partitions are rewritten; their names are not in the statement.
ALTER TABLE lf_part ADD COLUMN z float8 DEFAULT random();
-- next
CREATE TABLE lf_part_9 PARTITION OF lf_part FOR VALUES FROM (9000) TO (10000);
-- next
-- On a partitioned parent: a column without default is metadata on every partition.
ALTER TABLE lf_part ADD COLUMN lf_plain int;
-- next
-- The partitions are scanned, none rewritten.
ALTER TABLE lf_part ALTER COLUMN v SET NOT NULL;
-- next
ALTER TABLE lf_part ADD CONSTRAINT lf_part_id_pos CHECK (id > 0);
-- next
ALTER TABLE lf_part ADD CONSTRAINT lf_part_id_pos_nv CHECK (id > 0) NOT VALID;
-- next
-- The partitions are rewritten.
ALTER TABLE lf_part ALTER COLUMN id TYPE bigint;
-- next
-- A unique index on the parent must include the partition key; each partition builds one.
ALTER TABLE lf_part ADD CONSTRAINT lf_part_id_k_key UNIQUE (id, k);
-- next
ALTER TABLE lf_part RENAME COLUMN v TO v2;
-- next
ALTER TABLE lf_part RENAME TO lf_part_renamed;
-- next
TRUNCATE lf_part;
-- next
-- Dropping a partition locks its parent.
-- catalog_locks: lf_part
DROP TABLE lf_part_1;

-- ============================================== triggers, rules, policies
-- next
CREATE TRIGGER lf_main_trg2 AFTER INSERT ON lf_main FOR EACH ROW EXECUTE FUNCTION lf_trg_fn();
-- next
DROP TRIGGER lf_main_trg ON lf_main;
-- next
CREATE RULE lf_main_rule AS ON INSERT TO lf_main DO ALSO NOTIFY lf_main;
-- next
CREATE POLICY lf_main_pol ON lf_main USING (a > 0);

-- ============================================================ TRUNCATE, DROP
-- next
TRUNCATE lf_main;
-- next
-- lf_child references lf_ref.
-- expect_error: foreign key
TRUNCATE lf_ref;
-- next
TRUNCATE lf_ref, lf_child;
-- next
-- catalog_locks: lf_child
TRUNCATE lf_ref CASCADE;
-- next
TRUNCATE lf_part;
-- next
DROP TABLE lf_drop;
-- next
-- lf_child references lf_ref: its foreign key triggers on lf_ref go too.
-- catalog_locks: lf_ref
DROP TABLE lf_child;
-- next
-- A new table with a foreign key locks the referenced table.
CREATE TABLE lf_new (id int PRIMARY KEY, ref_id int REFERENCES lf_ref (id));

-- ================================================================ LOCK TABLE
-- next
LOCK TABLE lf_main IN ACCESS SHARE MODE;
-- next
LOCK TABLE lf_main IN ROW SHARE MODE;
-- next
LOCK TABLE lf_main IN ROW EXCLUSIVE MODE;
-- next
LOCK TABLE lf_main IN SHARE UPDATE EXCLUSIVE MODE;
-- next
LOCK TABLE lf_main IN SHARE MODE;
-- next
LOCK TABLE lf_main IN SHARE ROW EXCLUSIVE MODE;
-- next
LOCK TABLE lf_main IN EXCLUSIVE MODE;
-- next
LOCK TABLE lf_main IN ACCESS EXCLUSIVE MODE;
-- next
-- Default mode: ACCESS EXCLUSIVE.
LOCK TABLE lf_main;
-- next
-- On a partitioned table: the partitions are locked too.
LOCK TABLE lf_part IN SHARE MODE;

-- ========================================= VACUUM, CLUSTER, ANALYZE
-- next
-- no_transaction
VACUUM FULL lf_main;
-- next
-- no_transaction
VACUUM lf_main;
-- next
-- no_transaction
VACUUM (ANALYZE) lf_ref;
-- next
-- CLUSTER of one named plain table may run in a transaction block.
CLUSTER lf_main USING lf_main_pkey;
-- next
-- no_transaction
-- cleanup: ALTER TABLE lf_ref SET WITHOUT CLUSTER
CLUSTER lf_ref USING lf_ref_pkey;
-- next
ANALYZE lf_main;

-- ==================================================== materialized views
-- next
REFRESH MATERIALIZED VIEW lf_mv;
-- next
REFRESH MATERIALIZED VIEW CONCURRENTLY lf_mv;
-- next
ALTER MATERIALIZED VIEW lf_mv RENAME TO lf_mv2;
-- next
ALTER MATERIALIZED VIEW lf_mv CLUSTER ON lf_mv_id_uidx;

-- ====================================================== domains, types
-- next
-- Every column of the domain is checked: lf_dom is scanned.
-- catalog_locks: lf_dom
ALTER DOMAIN lf_posint ADD CONSTRAINT lf_posint_check CHECK (VALUE > 0);
-- next
-- catalog_locks: lf_dom
ALTER DOMAIN lf_posint ADD CONSTRAINT lf_posint_check CHECK (VALUE > 0) NOT VALID;
-- next
ALTER TYPE lf_mood ADD VALUE 'meh';

-- ============================================================ the rest
-- next
CREATE STATISTICS lf_main_ab_stats ON a, b FROM lf_main;
-- next
COMMENT ON TABLE lf_main IS 'lock facts';
-- next
GRANT SELECT ON lf_main TO app_trust;
-- next
CREATE VIEW lf_main_v AS SELECT id, a FROM lf_main;
-- next
ALTER SEQUENCE lf_seq INCREMENT BY 2;
-- next
ALTER SEQUENCE lf_seq RESTART;
