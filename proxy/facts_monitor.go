package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ddlguard/ddlguard/guard"
)

// MonitorFacts answers catalog facts from ddlguard's own side connections
// (the monitor role, configured by monitor.dsn or DDLGUARD_MONITOR_DSN)
// instead of the client's connection: it can answer inside pipelines and
// aborted transactions, and it measures sizes with pg_total_relation_size.
// One small pool per database the clients use. Every connection runs with
// lock_timeout 200ms and statement_timeout 2s, so a size that would wait for
// a lock becomes "unknown" instead.
//
// Minimal grants: LOGIN and CONNECT on the databases (the default PUBLIC
// grant suffices); reading the system catalogs and pg_total_relation_size
// need no privileges. Unqualified names resolve with the monitor role's
// search_path, which should match the applications' (usually public).
type MonitorFacts struct {
	base  *pgxpool.Config
	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
}

// NewMonitorFacts checks dsn (a libpq URL or key=value string) without
// connecting.
func NewMonitorFacts(dsn string) (*MonitorFacts, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("monitor.dsn: %w", err)
	}
	cfg.MaxConns = 2
	cfg.MaxConnIdleTime = 5 * time.Minute
	// Check every connection before use (pgxpool checks only those idle
	// for over a second): an operator's pg_terminate_backend or a server
	// restart must not cost the next guarded statement its facts, which
	// mid-pipeline nothing else can give. Facts queries are rare; the
	// round trip is cheap.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	rp := cfg.ConnConfig.RuntimeParams
	rp["lock_timeout"] = "200ms"
	rp["statement_timeout"] = "2s"
	if rp["application_name"] == "" {
		rp["application_name"] = "ddlguard-facts"
	}
	return &MonitorFacts{base: cfg, pools: map[string]*pgxpool.Pool{}}, nil
}

func (m *MonitorFacts) pool(database string) (*pgxpool.Pool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.pools[database]; ok {
		return p, nil
	}
	cfg := m.base.Copy()
	if database != "" {
		cfg.ConnConfig.Database = database
	}
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	m.pools[database] = p
	return p, nil
}

// Facts returns facts for names in database (nil value: no such relation).
func (m *MonitorFacts) Facts(database string, names []string) (map[string]*guard.RelationFacts, error) {
	q, err := factsQuery(names, true)
	if err != nil {
		return nil, err
	}
	out := map[string]*guard.RelationFacts{}
	if err := m.query(database, q, func(name string, js []byte) error { return addFactsRow(out, name, js) }); err != nil {
		return nil, err
	}
	if names := needsDetails(out); len(names) > 0 {
		q, err := detailFactsQuery(names, true)
		if err != nil {
			return nil, err
		}
		if err := m.query(database, q, func(name string, js []byte) error { return addDetailsRow(out, name, js) }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DomainFacts returns facts for the domains names in database: the
// relations with a column of each (nil value: no such domain).
func (m *MonitorFacts) DomainFacts(database string, names []string) (map[string]*guard.DomainFacts, error) {
	q, err := domainFactsQuery(names, true)
	if err != nil {
		return nil, err
	}
	out := map[string]*guard.DomainFacts{}
	return out, m.query(database, q, func(name string, js []byte) error { return addDomainRow(out, name, js) })
}

// query runs a catalog query answering (name, JSON) rows in database.
func (m *MonitorFacts) query(database, q string, row func(name string, js []byte) error) error {
	p, err := m.pool(database)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rows, err := p.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("monitor catalog query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var js []byte
		if err := rows.Scan(&name, &js); err != nil {
			return err
		}
		if err := row(name, js); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Blockers lists the conflicting lock holders and waiters for targets on
// the monitor connection, excluding the client's own backend (clientPID).
func (m *MonitorFacts) Blockers(database string, targets []guard.Lock, clientPID int) ([]blocker, error) {
	p, err := m.pool(database)
	if err != nil {
		return nil, err
	}
	q, err := preflightQuery(targets, strconv.Itoa(clientPID))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var lt, idle string
	var js []byte
	var pid int32 // the monitor's own
	if err := p.QueryRow(ctx, q).Scan(&lt, &idle, &js, &pid); err != nil {
		return nil, fmt.Errorf("monitor blocker check: %w", err)
	}
	var bs []blocker
	if js != nil {
		if err := json.Unmarshal(js, &bs); err != nil {
			return nil, err
		}
	}
	return bs, nil
}

// Close closes every pool.
func (m *MonitorFacts) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.pools {
		p.Close()
	}
	m.pools = map[string]*pgxpool.Pool{}
}
