package proxy

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/ddlguard/ddlguard/guard"
)

// factsQuery builds the catalog query for names ("rel" or "schema.rel", as
// the guard reports them), each resolved as the session would resolve it
// (relationOIDSQL). Sizes cover the whole partition tree. With exact, sizes
// are pg_total_relation_size (which locks each relation ACCESS SHARE: only
// for the monitor connection, under a short lock_timeout); otherwise
// relpages, and the query is the client's own connection's: its answer
// also carries what the blocker check and the lock timeout of the
// statement need (lockState): a third column, the lock modes other
// sessions hold or await on each relation, and a row without a name whose
// third column holds the session's lock_timeout and
// idle_in_transaction_session_timeout.
func factsQuery(names []string, exact bool) (string, error) {
	values, err := nameValues(names)
	if err != nil {
		return "", err
	}
	cols := `q.name, CASE WHEN c.oid IS NULL THEN NULL ELSE ` + relationFactsJSON(exact) + ` END`
	tail := ""
	if !exact {
		cols += `,
  (SELECT json_agg(l.mode) FROM locks l WHERE l.relation = c.oid AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid())`
		tail = `
UNION ALL SELECT NULL, NULL, json_build_array(current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'))`
	}
	return `/* ddlguard catalog facts */ ` + locksCTE + `
SELECT ` + cols + `
FROM (VALUES ` + values + `) AS q(name, oid)
LEFT JOIN pg_catalog.pg_class c ON c.oid = q.oid` + tail, nil
}

// nameValues is a VALUES list of (name, oid) for relation names, each
// resolved as the session would resolve it (relationOIDSQL).
func nameValues(names []string) (string, error) {
	rows := make([]string, 0, len(names))
	for _, n := range names {
		oid, err := relationOIDSQL(n)
		if err != nil {
			return "", err
		}
		rows = append(rows, fmt.Sprintf("(%s, %s)", sqlLiteral(n), oid))
	}
	return strings.Join(rows, ", "), nil
}

// locksCTE reads pg_locks once per query (each read walks every backend's
// lock slots): the relation locks in this database, for the size
// measurement of relationFactsJSON and the lock modes of factsQuery.
const locksCTE = `WITH locks AS MATERIALIZED (SELECT l.relation, l.mode, l.granted, l.pid FROM pg_catalog.pg_locks l
  WHERE l.locktype = 'relation' AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database()))`

// relationFactsJSON is the JSON object of facts (factsRow) about the
// pg_class row c; exact as for factsQuery.
//
// Without exact, a table or materialized view is measured with
// pg_relation_size (relpages says nothing about a table never vacuumed or
// analyzed, typically one an earlier migration created, and lags behind
// one filled since its last VACUUM, ANALYZE or CREATE INDEX) when taking
// its ACCESS SHARE lock cannot wait: the session already holds a lock on it
// (its own lock never blocks it), or no other session holds or waits for
// ACCESS EXCLUSIVE on it (the only mode ACCESS SHARE conflicts with). A
// session that asks for ACCESS EXCLUSIVE between that look and the lock
// would make the measurement wait behind it; the window is the time
// between two steps of one query. Otherwise its size is unknown, which the
// guard takes as large. Its indexes and TOAST table count by relpages.
func relationFactsJSON(exact bool) string {
	return `json_build_object(
  'kind', c.relkind, 'persistence', c.relpersistence, 'tuples', c.reltuples,
  'size', ` + sizeJSON("c", exact) + `,
` + relationDetailsJSON
}

// sizeJSON is the JSON size ({bytes, unknown}) of the pg_class row rel and
// its partitions, measured as relationFactsJSON says.
func sizeJSON(rel string, exact bool) string {
	pages := `(COALESCE((SELECT sum(ix.relpages) FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class ix ON ix.oid = x.indexrelid WHERE x.indrelid = r.oid), 0)
        + COALESCE((SELECT t.relpages FROM pg_catalog.pg_class t WHERE t.oid = r.reltoastrelid), 0))
        * current_setting('block_size')::bigint`
	size := `sum(CASE WHEN m.measurable IS NULL THEN r.relpages::bigint * current_setting('block_size')::bigint
        WHEN m.measurable THEN COALESCE(pg_catalog.pg_relation_size(r.oid), 0) ELSE 0 END + ` + pages + `)`
	unknown := `bool_or(m.measurable IS FALSE)`
	measurable := `LEFT JOIN LATERAL (SELECT CASE WHEN r.relkind IN ('r', 'm')
      THEN EXISTS (SELECT 1 FROM locks l WHERE l.relation = r.oid AND l.pid = pg_catalog.pg_backend_pid() AND l.granted)
        OR NOT EXISTS (SELECT 1 FROM locks l WHERE l.relation = r.oid
          AND l.mode = 'AccessExclusiveLock' AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid())
      END AS measurable) m ON true`
	if exact {
		size, unknown, measurable = `sum(pg_catalog.pg_total_relation_size(r.oid))`, `false`, ``
	}
	return `(WITH RECURSIVE tree(oid) AS (SELECT ` + rel + `.oid UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i
      JOIN tree ON i.inhparent = tree.oid)
    SELECT json_build_object('bytes', ` + size + `, 'unknown', ` + unknown + `)
    FROM tree JOIN pg_catalog.pg_class r ON r.oid = tree.oid
    ` + measurable + `)`
}

// relationDetailsJSON is the rest of relationFactsJSON's object, about the
// pg_class row c.
const relationDetailsJSON = `
  'populated', c.relispopulated,
  'columns', (SELECT json_object_agg(a.attname, json_build_object('type', pg_catalog.format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull))
      FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  'checks', (SELECT json_agg(pg_catalog.pg_get_constraintdef(k.oid)) FROM pg_catalog.pg_constraint k
      WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.convalidated),
  'unique_index', EXISTS (SELECT 1 FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid AND x.indisunique
      AND x.indisvalid AND x.indpred IS NULL),
  'default_partition', EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = c.oid AND p.partdefid <> 0),
  'table', (SELECT x.indrelid::regclass::text FROM pg_catalog.pg_index x WHERE x.indexrelid = c.oid))`

// detailFactsQuery builds the second catalog query, for the partitioned
// tables and materialized views among the relations a facts query found
// (names as factsQuery takes them): a partitioned table's partition tree
// with each partition's index names, and its own index names; the size of
// what a materialized view's query reads (the relations its rule depends
// on, through views), measured as relationFactsJSON measures sizes
// (REFRESH reruns the query under its lock). It is asked only for those
// kinds, so that the facts query every guarded statement may need stays
// as cheap to plan as it is.
func detailFactsQuery(names []string, exact bool) (string, error) {
	values, err := nameValues(names)
	if err != nil {
		return "", err
	}
	cte := ""
	if !exact {
		cte = locksCTE
	}
	return `/* ddlguard catalog details */ ` + cte + `
SELECT q.name, json_build_object(
  'partitions', CASE WHEN c.relkind = 'p' THEN COALESCE((WITH RECURSIVE parts(oid, parent, depth) AS (
        SELECT i.inhrelid, i.inhparent, 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid
        UNION ALL SELECT i.inhrelid, i.inhparent, parts.depth + 1 FROM pg_catalog.pg_inherits i JOIN parts ON i.inhparent = parts.oid)
      SELECT json_agg(json_build_object('name', ` + visibleName("r") + `,
          'parent', CASE WHEN parts.parent = c.oid THEN '' ELSE ` + visibleName("pr") + ` END,
          'kind', r.relkind, 'indexes', ` + indexNames("r") + `) ORDER BY parts.depth, r.relname)
      FROM parts JOIN pg_catalog.pg_class r ON r.oid = parts.oid JOIN pg_catalog.pg_class pr ON pr.oid = parts.parent), '[]') END,

  'query_size', CASE WHEN c.relkind = 'm' THEN (WITH RECURSIVE deps(oid) AS (
        SELECT d.refobjid FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
          AND d.objid = w.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> c.oid
        WHERE w.ev_class = c.oid
        UNION SELECT d.refobjid FROM deps JOIN pg_catalog.pg_class v ON v.oid = deps.oid AND v.relkind = 'v'
          JOIN pg_catalog.pg_rewrite w ON w.ev_class = v.oid JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
          AND d.objid = w.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> v.oid)
      SELECT json_build_object('bytes', COALESCE(sum((qs.size->>'bytes')::bigint), 0), 'unknown', COALESCE(bool_or((qs.size->>'unknown')::boolean), false))
      FROM deps JOIN pg_catalog.pg_class q ON q.oid = deps.oid AND q.relkind IN ('r', 'p', 'm')
      CROSS JOIN LATERAL (SELECT ` + sizeJSON("q", exact) + ` AS size) qs) END,
  'indexes', CASE WHEN c.relkind = 'p' THEN ` + indexNames("c") + ` END)
FROM (VALUES ` + values + `) AS q(name, oid)
JOIN pg_catalog.pg_class c ON c.oid = q.oid`, nil
}

// detailsRow is a row of detailFactsQuery.
type detailsRow struct {
	Partitions []struct {
		Name, Parent, Kind string
		Indexes            []string
	} `json:"partitions"`
	Indexes   []string   `json:"indexes"`
	QuerySize *factsSize `json:"query_size"`
}

// addDetailsRow decodes one row of detailFactsQuery into the facts of
// its relation in out.
func addDetailsRow(out map[string]*guard.RelationFacts, name string, js []byte) error {
	f := out[name]
	if f == nil || js == nil {
		return nil
	}
	var r detailsRow
	if err := json.Unmarshal(js, &r); err != nil {
		return fmt.Errorf("catalog details for %s: %w", name, err)
	}
	if r.Partitions != nil {
		f.Partitions = make([]guard.Partition, 0, len(r.Partitions))
		for _, p := range r.Partitions {
			gp := guard.Partition{Name: p.Name, Parent: p.Parent, Indexes: p.Indexes}
			if p.Kind != "" {
				gp.Kind = p.Kind[0]
			}
			f.Partitions = append(f.Partitions, gp)
		}
	}
	f.Indexes = r.Indexes
	if r.QuerySize != nil {
		f.QueryBytes = r.QuerySize.bytes()
	}
	return nil
}

// needsDetails lists the relations of facts that detailFactsQuery is for.
func needsDetails(facts map[string]*guard.RelationFacts) []string {
	var out []string
	for name, f := range facts {
		if f != nil && (f.Kind == 'p' || f.Kind == 'm') {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// visibleName is the name of the pg_class row rel as the guard names
// relations: qualified only when the search_path does not find it.
func visibleName(rel string) string {
	return `CASE WHEN pg_catalog.pg_table_is_visible(` + rel + `.oid) THEN ` + rel + `.relname::text
            ELSE (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = ` + rel + `.relnamespace) || '.' || ` + rel + `.relname END`
}

// indexNames is a JSON array of the names of the indexes of the pg_class
// row rel.
func indexNames(rel string) string {
	return `(SELECT json_agg(ix.relname) FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ix ON ix.oid = x.indexrelid
            WHERE x.indrelid = ` + rel + `.oid)`
}

// domainFactsQuery builds the catalog query for domains (names as the
// guard reports them), resolved as the session would resolve a type name
// (the domain and the domains over it collected once per name, not per
// column of pg_attribute):
// for each, the relations (not indexes) with a live column of the domain
// or of a domain over it, named as the guard names relations (qualified
// only when the search_path does not find them), with their facts.
func domainFactsQuery(names []string, exact bool) (string, error) {
	var rows []string
	for _, n := range names {
		nsp, typ, err := nameLiterals(n)
		if err != nil {
			return "", err
		}
		rows = append(rows, fmt.Sprintf("(%s, %s::text, %s::name)", sqlLiteral(n), nsp, typ))
	}
	return `/* ddlguard domain facts */ ` + locksCTE + `
SELECT q.name, CASE WHEN t.oid IS NULL THEN NULL ELSE json_build_object(
  'relations', COALESCE((SELECT json_agg(json_build_object(
        'name', CASE WHEN pg_catalog.pg_table_is_visible(c.oid) THEN c.relname::text ELSE n.nspname || '.' || c.relname END,
        'columns', u.cols, 'facts', ` + relationFactsJSON(exact) + `) ORDER BY n.nspname, c.relname)
      FROM (SELECT a.attrelid, array_agg(a.attname::text ORDER BY a.attnum) AS cols
          FROM pg_catalog.pg_attribute a
          WHERE a.atttypid = ANY (t.doms) AND a.attnum > 0 AND NOT a.attisdropped
          GROUP BY a.attrelid) u
      JOIN pg_catalog.pg_class c ON c.oid = u.attrelid AND c.relkind NOT IN ('i', 'I')
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace), '[]'::json)) END
FROM (VALUES ` + strings.Join(rows, ", ") + `) AS q(name, nsp, typ)
LEFT JOIN LATERAL (SELECT t.oid, (WITH RECURSIVE doms(oid) AS (SELECT t.oid UNION
        SELECT d.oid FROM pg_catalog.pg_type d JOIN doms ON d.typbasetype = doms.oid WHERE d.typtype = 'd')
      SELECT array_agg(oid) FROM doms) AS doms
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typname = q.typ AND t.typtype = 'd'
    AND (n.nspname = q.nsp OR (q.nsp IS NULL AND n.nspname = ANY (current_schemas(true))))
  ORDER BY array_position(current_schemas(true), n.nspname) LIMIT 1) t ON true`, nil
}

type domainRow struct {
	Relations []struct {
		Name    string   `json:"name"`
		Columns []string `json:"columns"`
		Facts   factsRow `json:"facts"`
	} `json:"relations"`
}

// addDomainRow decodes one row of the domain query (name, JSON or NULL for
// "no such domain").
func addDomainRow(out map[string]*guard.DomainFacts, name string, js []byte) error {
	if js == nil {
		out[name] = nil
		return nil
	}
	var r domainRow
	if err := json.Unmarshal(js, &r); err != nil {
		return fmt.Errorf("domain facts for %s: %w", name, err)
	}
	f := &guard.DomainFacts{}
	for _, rel := range r.Relations {
		f.Relations = append(f.Relations, guard.DomainRelation{Name: rel.Name, Columns: rel.Columns, Facts: *rel.Facts.facts()})
	}
	out[name] = f
	return nil
}

// factsSize is a measured size; unknown when a relation could not be
// measured.
type factsSize struct {
	Bytes   *int64 `json:"bytes"`
	Unknown bool   `json:"unknown"`
}

// bytes is the size, math.MaxInt64 (taken as large) when unknown.
func (s factsSize) bytes() int64 {
	if s.Bytes == nil || s.Unknown {
		return math.MaxInt64
	}
	return *s.Bytes
}

type factsRow struct {
	Kind        string    `json:"kind"`
	Persistence string    `json:"persistence"`
	Tuples      float64   `json:"tuples"`
	Size        factsSize `json:"size"`
	Populated   bool      `json:"populated"`
	Columns     map[string]struct {
		Type    string
		NotNull bool `json:"not_null"`
	} `json:"columns"`
	Checks           []string `json:"checks"`
	UniqueIndex      bool     `json:"unique_index"`
	DefaultPartition bool     `json:"default_partition"`
	Table            *string  `json:"table"`
}

// notNullCheck matches pg_get_constraintdef of CHECK (col IS NOT NULL).
var notNullCheck = regexp.MustCompile(`^CHECK \(\(?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*) IS NOT NULL\)?\)$`)

// nameLiterals splits a relation name as the guard reports it ("rel" or
// "schema.rel") into SQL literals for schema (NULL when unqualified) and
// relation; names ddlguard cannot quote safely are refused.
func nameLiterals(name string) (nsp, rel string, err error) {
	if strings.ContainsAny(name, "\\\x00") {
		return "", "", fmt.Errorf("relation name %q cannot be looked up safely", name)
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return sqlLiteral(name[:i]), sqlLiteral(name[i+1:]), nil
	}
	return "NULL", sqlLiteral(name), nil
}

// resolveRelationSQL is a subquery yielding the pg_class row (aliased c) a
// name resolves to in the session, as PostgreSQL would resolve it
// (search_path order, pg_temp), by comparing with the catalogs: it never
// raises an error. nsp and rel are SQL expressions (text, name).
func resolveRelationSQL(nsp, rel string) string {
	return `(SELECT c.* FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relname = ` + rel + ` AND (n.nspname = ` + nsp + ` OR (` + nsp + ` IS NULL AND n.nspname = ANY (current_schemas(true))))
  ORDER BY array_position(current_schemas(true), n.nspname) LIMIT 1) c`
}

// relationOIDSQL is an expression for the oid of the relation name
// resolves to in the session, as PostgreSQL resolves it, or NULL; it takes
// no lock and never raises an error (an error would abort the client's
// transaction). An unqualified name goes through to_regclass, which
// searches the session's search_path (pg_temp first, schemas it may not
// use skipped); a qualified one is compared with the catalogs, since
// to_regclass would raise an error for a schema without USAGE.
func relationOIDSQL(name string) (string, error) {
	nsp, rel, err := nameLiterals(name)
	if err != nil {
		return "", err
	}
	if nsp == "NULL" {
		return "pg_catalog.to_regclass(" + sqlLiteral(`"`+strings.ReplaceAll(name, `"`, `""`)+`"`) + ")", nil
	}
	return `(SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ` + nsp + ` AND c.relname = ` + rel + `)`, nil
}

// addFactsRow decodes one row (name, JSON or NULL for "no such relation").
func addFactsRow(out map[string]*guard.RelationFacts, name string, js []byte) error {
	if js == nil {
		out[name] = nil
		return nil
	}
	var r factsRow
	if err := json.Unmarshal(js, &r); err != nil {
		return fmt.Errorf("catalog facts for %s: %w", name, err)
	}
	out[name] = r.facts()
	return nil
}

func (r *factsRow) facts() *guard.RelationFacts {
	f := &guard.RelationFacts{Rows: int64(r.Tuples), Populated: r.Populated, UniqueIndex: r.UniqueIndex,
		HasDefaultPartition: r.DefaultPartition}
	if r.Kind != "" {
		f.Kind = r.Kind[0]
	}
	if r.Persistence != "" {
		f.Persistence = r.Persistence[0]
	}
	f.SizeBytes = r.Size.bytes() // unknown: the guard treats it as large
	if len(r.Columns) > 0 {
		f.Columns = make(map[string]guard.Column, len(r.Columns))
		for name, col := range r.Columns {
			f.Columns[name] = guard.Column{Type: col.Type, NotNull: col.NotNull}
		}
	}
	for _, def := range r.Checks {
		if m := notNullCheck.FindStringSubmatch(def); m != nil {
			if f.NotNullChecks == nil {
				f.NotNullChecks = map[string]bool{}
			}
			col := m[1]
			if strings.HasPrefix(col, `"`) {
				col = strings.ReplaceAll(col[1:len(col)-1], `""`, `"`)
			}
			f.NotNullChecks[col] = true
		}
	}
	if r.Table != nil {
		f.Table = *r.Table
	}
	return f
}
