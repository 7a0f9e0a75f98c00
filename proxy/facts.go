package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/guard"
)

// Catalog facts for the guard. With zero configuration ddlguard asks them on
// the client's own upstream connection, just before a guarded statement,
// invisibly: it waits until the server owes the client nothing, sends one
// read-only catalog query, and the upstream pump diverts the answer to
// ddlguard instead of relaying it. It never asks inside an aborted
// transaction, nor in the middle of an extended-protocol batch (the guard
// then gets "unknown" and takes the safe answer).
//
// The query reads only system catalogs: it takes no lock on the user's
// tables (so it cannot queue behind an ACCESS EXCLUSIVE), resolves names
// without functions that can raise errors (an error inside the client's
// transaction would abort it), and uses no prepared statement (the client's
// unnamed statement stays theirs). Sizes are pg_class.relpages of the table,
// its indexes and TOAST table; a table never vacuumed or analyzed has an
// unknown size, which the guard treats as large.
//
// For an ALTER DOMAIN that checks every value of a domain (guard.Domains)
// a second query of the same kind lists the relations with a column of the
// domain, or of a domain over it, with their facts: the guard records its
// SHARE locks on them, and a rewrite's VALIDATE step gets the blocker check
// on them (stepFacts). A domain that cannot be looked up is unknown: its
// tables are taken as large and the statement still gets the lock timeout.

// factsTTL bounds how long a connection reuses facts it asked for.
const factsTTL = 10 * time.Second

// factsIdleWait bounds waiting for the server to finish what the client
// sent before (a client that pipelines and reads late must not stall);
// factsWait bounds the catalog query itself.
const (
	factsIdleWait = time.Second
	factsWait     = 10 * time.Second
)

// factsCache holds one connection's facts. Only the client pump uses it.
type factsCache struct {
	at map[string]time.Time
	m  map[string]*guard.RelationFacts // nil value: the relation does not exist
	// Domains (the relations with a column of each), the same way.
	domainAt map[string]time.Time
	domains  map[string]*guard.DomainFacts // nil value: no such domain
}

// forget drops what is cached about a relation a statement changed, and
// every domain's relations (the statement may have added or dropped a
// column of a domain).
func (fc *factsCache) forget(name string) {
	delete(fc.at, name)
	delete(fc.m, name)
	clear(fc.domainAt)
	clear(fc.domains)
}

// Relation implements guard.Facts.
func (fc *factsCache) Relation(name string) (guard.RelationFacts, bool) {
	if f := fc.m[name]; f != nil {
		return *f, true
	}
	return guard.RelationFacts{}, false
}

// Domain implements guard.Facts.
func (fc *factsCache) Domain(name string) (guard.DomainFacts, bool) {
	if f := fc.domains[name]; f != nil {
		return *f, true
	}
	return guard.DomainFacts{}, false
}

// factsFor returns facts for the relations sql locks strongly and the
// domains whose relations it locks, asking the server for those not cached
// when it may (canAsk).
func (c *clientConn) factsFor(g *guard.Guard, sql string, canAsk bool) guard.Facts {
	names, domains := g.Relations(sql), g.Domains(sql)
	if len(names) == 0 && len(domains) == 0 {
		return &c.facts
	}
	now := time.Now()
	missing, missingDomains := stale(names, c.facts.at, now), stale(domains, c.facts.domainAt, now)
	if (len(missing) == 0 && len(missingDomains) == 0) || (!canAsk && c.srv.cfg.MonitorFacts == nil) {
		return &c.facts
	}
	if len(missing) > 0 {
		got, err := c.askFacts(missing, canAsk)
		if err != nil {
			c.srv.log.Debug("catalog facts unavailable", "conn_id", c.id, "err", err)
		} else {
			if c.facts.at == nil {
				c.facts.at = make(map[string]time.Time)
				c.facts.m = make(map[string]*guard.RelationFacts)
			}
			for _, n := range missing {
				c.facts.at[n] = now
				c.facts.m[n] = got[n]
			}
		}
	}
	if len(missingDomains) > 0 {
		got, err := c.askDomainFacts(missingDomains, canAsk)
		if err != nil {
			c.srv.log.Debug("domain facts unavailable", "conn_id", c.id, "err", err)
		} else {
			if c.facts.domainAt == nil {
				c.facts.domainAt = make(map[string]time.Time)
				c.facts.domains = make(map[string]*guard.DomainFacts)
			}
			for _, n := range missingDomains {
				c.facts.domainAt[n] = now
				c.facts.domains[n] = got[n]
			}
		}
	}
	return &c.facts
}

// stale lists the names not asked for within factsTTL.
func stale(names []string, at map[string]time.Time, now time.Time) []string {
	var out []string
	for _, n := range names {
		if t, ok := at[n]; !ok || now.Sub(t) > factsTTL {
			out = append(out, n)
		}
	}
	return out
}

// stepFacts are the facts a rewrite step is planned with: for an ALTER
// DOMAIN that scans (VALIDATE CONSTRAINT), the domain's relations, which
// it locks; other steps are planned from their own locks alone.
func (c *clientConn) stepFacts(g *guard.Guard, step string) guard.Facts {
	if len(g.Domains(step)) == 0 {
		return guard.NoFacts{}
	}
	return c.factsFor(g, step, true)
}

// askFacts asks the monitor connection when one is configured, else (when
// it may) the client's own connection.
func (c *clientConn) askFacts(names []string, canAsk bool) (map[string]*guard.RelationFacts, error) {
	if m := c.srv.cfg.MonitorFacts; m != nil {
		got, err := m.Facts(c.sess.Database, names)
		if err == nil || !canAsk {
			return got, err
		}
		c.srv.log.Warn("monitor connection could not give catalog facts; asking on the client's connection", "err", err)
	}
	q, err := factsQuery(names, false)
	if err != nil {
		return nil, err
	}
	frames, err := c.askCatalog(q)
	if err != nil {
		return nil, err
	}
	return parseFacts(frames)
}

// askDomainFacts is askFacts for domains.
func (c *clientConn) askDomainFacts(names []string, canAsk bool) (map[string]*guard.DomainFacts, error) {
	if m := c.srv.cfg.MonitorFacts; m != nil {
		got, err := m.DomainFacts(c.sess.Database, names)
		if err == nil || !canAsk {
			return got, err
		}
		c.srv.log.Warn("monitor connection could not give domain facts; asking on the client's connection", "err", err)
	}
	q, err := domainFactsQuery(names, false)
	if err != nil {
		return nil, err
	}
	frames, err := c.askCatalog(q)
	if err != nil {
		return nil, err
	}
	rows, err := dataRows(frames, 2)
	if err != nil {
		return nil, err
	}
	out := map[string]*guard.DomainFacts{}
	for _, row := range rows {
		if err := addDomainRow(out, string(row[0]), row[1]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// askCatalog runs one of ddlguard's catalog queries on the client's own
// connection, once the server owes the client nothing.
func (c *clientConn) askCatalog(q string) ([]divertedFrame, error) {
	if !c.waitIdle(factsIdleWait) {
		return nil, errors.New("the server is still busy with the client's earlier statements")
	}
	if c.sess.TxStatus() == TxFailed {
		return nil, errors.New("the client's transaction is aborted")
	}
	return c.internalQuery(q, factsWait)
}

// waitIdle waits until the server owes the client no ReadyForQuery.
func (c *clientConn) waitIdle(limit time.Duration) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for c.sess.pending.Load() > 0 {
		select {
		case <-c.idle:
		case <-deadline.C:
			return false
		}
	}
	return true
}

// signalIdle wakes a client pump waiting in waitIdle.
func (c *clientConn) signalIdle() {
	select {
	case c.idle <- struct{}{}:
	default:
	}
}

// divertBuf collects the upstream frames answering ddlguard's own query.
type divertBuf struct {
	mu     sync.Mutex
	frames []divertedFrame
	done   chan struct{}
}

type divertedFrame struct {
	typ  byte
	body []byte
}

func (d *divertBuf) add(typ byte, body []byte) {
	d.mu.Lock()
	d.frames = append(d.frames, divertedFrame{typ, append([]byte(nil), body...)})
	d.mu.Unlock()
}

// internalQuery sends a simple Query of ddlguard's own on the upstream
// connection and returns the frames that answer it, up to ReadyForQuery.
// The caller has made sure the server owes the client nothing.
func (c *clientConn) internalQuery(sql string, limit time.Duration) ([]divertedFrame, error) {
	frame, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return c.internalSend(frame, limit)
}

// errUpstreamEnded: the upstream leg ended before ddlguard's own query was
// answered.
var errUpstreamEnded = errors.New("the upstream connection ended before the answer")

// internalSend sends frames that end in exactly one ReadyForQuery (a Query,
// or an extended batch ending in Sync) and collects the answer.
func (c *clientConn) internalSend(frame []byte, limit time.Duration) ([]divertedFrame, error) {
	d := &divertBuf{done: make(chan struct{})}
	c.divert.Store(d)
	c.updateInspectAll()
	c.sess.pending.Add(1)
	if _, err := c.uw.Write(frame); err != nil {
		return nil, err
	}
	if err := c.uw.Flush(); err != nil {
		return nil, err
	}
	select {
	case <-d.done:
	case <-c.upstreamEndedCh():
		return nil, errUpstreamEnded
	case <-time.After(limit):
		// The answer will still come and still be diverted; only this
		// statement goes without facts.
		return nil, fmt.Errorf("no answer to the catalog query within %s", limit)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.frames, nil
}

// factsQuery builds the catalog query for names ("rel" or "schema.rel", as
// the guard reports them). Names are resolved as the session would resolve
// them (search_path, pg_temp) by comparing with the catalogs, never by
// parsing them. Sizes cover the whole partition tree. With exact, sizes are
// pg_total_relation_size (which locks each relation ACCESS SHARE: only for
// the monitor connection, under a short lock_timeout); otherwise relpages.
func factsQuery(names []string, exact bool) (string, error) {
	var rows []string
	for _, n := range names {
		nsp, rel, err := nameLiterals(n)
		if err != nil {
			return "", err
		}
		rows = append(rows, fmt.Sprintf("(%s, %s::text, %s::name)", sqlLiteral(n), nsp, rel))
	}
	return `/* ddlguard catalog facts */ SELECT q.name, CASE WHEN c.oid IS NULL THEN NULL ELSE ` + relationFactsJSON(exact) + ` END
FROM (VALUES ` + strings.Join(rows, ", ") + `) AS q(name, nsp, rel)
LEFT JOIN LATERAL ` + resolveRelationSQL("q.nsp", "q.rel") + ` ON true`, nil
}

// relationFactsJSON is the JSON object of facts (factsRow) about the
// pg_class row c; exact as for factsQuery.
func relationFactsJSON(exact bool) string {
	size := `sum(r.relpages::bigint + COALESCE((SELECT sum(ix.relpages) FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class ix ON ix.oid = x.indexrelid WHERE x.indrelid = r.oid), 0)
        + COALESCE((SELECT t.relpages FROM pg_catalog.pg_class t WHERE t.oid = r.reltoastrelid), 0))
        * current_setting('block_size')::bigint`
	unknown := `bool_or(r.relkind IN ('r', 'm') AND (r.reltuples < 0 OR (r.reltuples = 0 AND r.relpages = 0)))`
	if exact {
		size, unknown = `sum(pg_catalog.pg_total_relation_size(r.oid))`, `false`
	}
	return `json_build_object(
  'kind', c.relkind, 'persistence', c.relpersistence, 'tuples', c.reltuples,
  'size', (WITH RECURSIVE tree(oid) AS (SELECT c.oid UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i
      JOIN tree ON i.inhparent = tree.oid)
    SELECT json_build_object('bytes', ` + size + `, 'unknown', ` + unknown + `)
    FROM tree JOIN pg_catalog.pg_class r ON r.oid = tree.oid),
  'populated', c.relispopulated,
  'columns', (SELECT json_object_agg(a.attname, json_build_object('type', pg_catalog.format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull))
      FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  'checks', (SELECT json_agg(pg_catalog.pg_get_constraintdef(k.oid)) FROM pg_catalog.pg_constraint k
      WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.convalidated),
  'unique_index', EXISTS (SELECT 1 FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid AND x.indisunique
      AND x.indisvalid AND x.indpred IS NULL),
  'default_partition', EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table p WHERE p.partrelid = c.oid AND p.partdefid <> 0),
  'table', (SELECT x.indrelid::regclass::text FROM pg_catalog.pg_index x WHERE x.indexrelid = c.oid))`
}

// domainFactsQuery builds the catalog query for domains (names as the
// guard reports them), resolved as the session would resolve a type name:
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
	return `/* ddlguard domain facts */ SELECT q.name, CASE WHEN t.oid IS NULL THEN NULL ELSE json_build_object(
  'relations', COALESCE((SELECT json_agg(json_build_object(
        'name', CASE WHEN pg_catalog.pg_table_is_visible(c.oid) THEN c.relname::text ELSE n.nspname || '.' || c.relname END,
        'columns', u.cols, 'facts', ` + relationFactsJSON(exact) + `) ORDER BY n.nspname, c.relname)
      FROM (SELECT a.attrelid, array_agg(a.attname::text ORDER BY a.attnum) AS cols
          FROM pg_catalog.pg_attribute a
          WHERE a.atttypid IN (WITH RECURSIVE doms(oid) AS (SELECT t.oid UNION
                SELECT d.oid FROM pg_catalog.pg_type d JOIN doms ON d.typbasetype = doms.oid WHERE d.typtype = 'd')
              SELECT oid FROM doms)
            AND a.attnum > 0 AND NOT a.attisdropped
          GROUP BY a.attrelid) u
      JOIN pg_catalog.pg_class c ON c.oid = u.attrelid AND c.relkind NOT IN ('i', 'I')
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace), '[]'::json)) END
FROM (VALUES ` + strings.Join(rows, ", ") + `) AS q(name, nsp, typ)
LEFT JOIN LATERAL (SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
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

type factsRow struct {
	Kind        string  `json:"kind"`
	Persistence string  `json:"persistence"`
	Tuples      float64 `json:"tuples"`
	Size        struct {
		Bytes   *int64 `json:"bytes"`
		Unknown bool   `json:"unknown"`
	} `json:"size"`
	Populated bool `json:"populated"`
	Columns   map[string]struct {
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

// parseFacts reads the catalog query's answer from diverted frames.
func parseFacts(frames []divertedFrame) (map[string]*guard.RelationFacts, error) {
	rows, err := dataRows(frames, 2)
	if err != nil {
		return nil, err
	}
	out := map[string]*guard.RelationFacts{}
	for _, row := range rows {
		if err := addFactsRow(out, string(row[0]), row[1]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dataRows returns the values of the DataRows in an answer to one of
// ddlguard's own queries (each with cols columns), or its error.
func dataRows(frames []divertedFrame, cols int) ([][][]byte, error) {
	var rows [][][]byte
	for _, f := range frames {
		switch f.typ {
		case 'E':
			return nil, upstreamError(f.body)
		case 'D':
			var row pgproto3.DataRow
			if err := row.Decode(f.body); err != nil || len(row.Values) != cols {
				return nil, errors.New("malformed row in the answer to ddlguard's query")
			}
			rows = append(rows, row.Values)
		}
	}
	return rows, nil
}

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
	f.SizeBytes = math.MaxInt64 // unknown: the guard treats it as large
	if r.Size.Bytes != nil && !r.Size.Unknown {
		f.SizeBytes = *r.Size.Bytes
	}
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
