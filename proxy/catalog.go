package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ddlguard/ddlguard/guard"
)

// The catalog: what ddlguard asks the server before a guarded statement
// (relation facts, domain facts, the sessions that hold or wait for
// conflicting locks), and where it asks it. Two sources answer the same
// questions with the same SQL (catalog_sql.go, blockers.go): the client's
// own upstream connection (sessionCatalog, through the internal-query
// mechanism of internalquery.go) and the monitor role's pool
// (MonitorFacts, facts_monitor.go). catalogs orders them and askCatalogs
// is the one place that falls back from one to the next.

// catalog is one source of catalog answers.
type catalog interface {
	relationFacts(names []string) (map[string]*guard.RelationFacts, error)
	domainFacts(names []string) (map[string]*guard.DomainFacts, error)
}

// catalogs is the order in which the sources are asked: the monitor
// connection when one is configured, then the client's own connection
// when it may be asked now (clientMayAsk: at a sync point).
func (c *clientConn) catalogs(clientMayAsk bool) []catalog {
	var out []catalog
	if m := c.srv.cfg.MonitorFacts; m != nil {
		out = append(out, monitorCatalog{m: m, database: c.sess.Database})
	}
	if clientMayAsk {
		out = append(out, c.sessionCatalog())
	}
	return out
}

// askCatalogs asks the sources in order until one answers; what names the
// question in the log line of a fallback.
func askCatalogs[T any](c *clientConn, cats []catalog, what string, ask func(catalog) (T, error)) (T, error) {
	var zero T
	err := errors.New("no catalog may be asked now")
	for i, k := range cats {
		var got T
		got, err = ask(k)
		if err == nil {
			return got, nil
		}
		if i < len(cats)-1 {
			c.srv.log.Warn("monitor connection could not give "+what+"; asking on the client's connection", "err", err)
		}
	}
	return zero, err
}

// sessionCatalog asks on the client's own upstream connection.
type sessionCatalog struct{ c *clientConn }

func (c *clientConn) sessionCatalog() sessionCatalog { return sessionCatalog{c} }

// query runs one of ddlguard's catalog queries on the client's connection,
// once the server owes the client nothing, never in an aborted
// transaction.
func (s sessionCatalog) query(q string) ([]divertedFrame, error) {
	c := s.c
	if !c.waitIdle(factsIdleWait) {
		return nil, errors.New("the server is still busy with the client's earlier statements")
	}
	if c.sess.TxStatus() == TxFailed {
		return nil, errors.New("the client's transaction is aborted")
	}
	return c.internalQuery(q, factsWait)
}

func (s sessionCatalog) relationFacts(names []string) (map[string]*guard.RelationFacts, error) {
	q, err := factsQuery(names, false)
	if err != nil {
		return nil, err
	}
	frames, err := s.query(q)
	if err != nil {
		return nil, err
	}
	rows, err := dataRows(frames, 3)
	if err != nil {
		return nil, err
	}
	out := map[string]*guard.RelationFacts{}
	for _, row := range rows {
		if row[0] == nil {
			err = s.c.lockState.addSettings(row[2])
		} else if err = addFactsRow(out, string(row[0]), row[1]); err == nil {
			err = s.c.lockState.addModes(string(row[0]), row[2])
		}
		if err != nil {
			return nil, err
		}
	}
	if names := needsDetails(out); len(names) > 0 {
		q, err := detailFactsQuery(names, false)
		if err != nil {
			return nil, err
		}
		frames, err := s.query(q)
		if err != nil {
			return nil, err
		}
		rows, err := dataRows(frames, 2)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			if err := addDetailsRow(out, string(row[0]), row[1]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (s sessionCatalog) domainFacts(names []string) (map[string]*guard.DomainFacts, error) {
	q, err := domainFactsQuery(names, false)
	if err != nil {
		return nil, err
	}
	frames, err := s.query(q)
	if err != nil {
		return nil, err
	}
	return decodeRows(frames, addDomainRow)
}

// preflight reads the session's settings and its backend's pid, and the
// sessions that hold or wait for locks conflicting with targets (all of
// them: the caller judges which block), without waiting for the server to
// be idle: the caller has waited for a sync point. A first, lighter query
// finds whether there are any; only then are they described: by the
// monitor connection when one is configured (it may see sessions the
// client's role cannot), told the client's backend pid as the server
// gives it (a pooler in between replaces the one in BackendKeyData), else
// on the client's connection.
func (s sessionCatalog) preflight(targets []guard.Lock) (*preflight, error) {
	build, first := conflictsQuery, true
	if len(targets) == 0 {
		build = preflightQuery
	}
	for ; ; first = false {
		q, err := build(targets, "pg_catalog.pg_backend_pid()")
		if err != nil {
			return nil, err
		}
		frames, err := s.c.internalQuery(q, factsWait)
		if err != nil {
			return nil, err
		}
		rows, err := dataRows(frames, 4)
		if err != nil || len(rows) != 1 {
			return nil, fmt.Errorf("preflight: %v", err)
		}
		if string(rows[0][2]) != "t" {
			return preflightFromRow(rows[0])
		}
		// A conflict: who is it?
		if m := s.c.srv.cfg.MonitorFacts; m != nil && first {
			pf, err := preflightFromRow([][]byte{rows[0][0], rows[0][1], nil, rows[0][3]})
			if err != nil {
				return nil, err
			}
			if pf.blockers, err = m.Blockers(s.c.sess.Database, targets, pf.pid); err == nil {
				return pf, nil
			}
			s.c.srv.log.Warn("monitor connection could not describe the blockers; asking on the client's connection", "err", err)
		}
		build = preflightQuery
	}
}

// preflightFromRow reads a preflight answer: the two timeouts, the
// blockers (JSON, or NULL or false for none) and the backend's pid.
func preflightFromRow(row [][]byte) (*preflight, error) {
	pf := &preflight{lockTimeout: string(row[0]), idleTimeout: string(row[1])}
	pf.pid, _ = strconv.Atoi(string(row[3]))
	if row[2] != nil && string(row[2]) != "f" {
		if err := json.Unmarshal(row[2], &pf.blockers); err != nil {
			return nil, fmt.Errorf("preflight blockers: %w", err)
		}
	}
	return pf, nil
}

// decodeRows reads the (name, JSON) rows of a catalog query's answer.
func decodeRows[T any](frames []divertedFrame, add func(map[string]*T, string, []byte) error) (map[string]*T, error) {
	rows, err := dataRows(frames, 2)
	if err != nil {
		return nil, err
	}
	out := map[string]*T{}
	for _, row := range rows {
		if err := add(out, string(row[0]), row[1]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// monitorCatalog asks on the monitor role's pool for the client's
// database.
type monitorCatalog struct {
	m        *MonitorFacts
	database string
}

func (k monitorCatalog) relationFacts(names []string) (map[string]*guard.RelationFacts, error) {
	return k.m.Facts(k.database, names)
}

func (k monitorCatalog) domainFacts(names []string) (map[string]*guard.DomainFacts, error) {
	return k.m.DomainFacts(k.database, names)
}
