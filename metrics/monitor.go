package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The lock monitor: a side connection of ddlguard's own polls
// pg_stat_activity and pg_locks every Interval and turns what it sees into
// gauges (who waits for which lock, for how long, who blocks them and in
// which state) and a snapshot for the /locks page. It needs only the
// pg_monitor role (pg_read_all_stats to see other roles' sessions; pg_locks
// and pg_blocking_pids are open to everyone). Polls never pile up: a tick
// that finds the previous poll still running is skipped and counted. A
// failed poll is counted, drops the connection (the next poll reconnects)
// and never stops ddlguard.

// MonitorConfig configures the lock monitor. Zero fields take defaults.
type MonitorConfig struct {
	// DSN is a libpq URL or key=value string for the monitor's own
	// connection (its role needs pg_monitor).
	DSN string
	// Interval between polls.
	Interval time.Duration
	// Timeout bounds one poll, connecting included.
	Timeout time.Duration
	// TopN bounds the per-relation and per-blocker series.
	TopN int
	// Logger receives poll failures; nil means slog.Default().
	Logger *slog.Logger
}

// Monitor defaults.
const (
	DefaultMonitorInterval = 2 * time.Second
	DefaultMonitorTimeout  = 10 * time.Second
	DefaultMonitorTopN     = 10
)

func (c MonitorConfig) withDefaults() MonitorConfig {
	c.Interval = cmp.Or(c.Interval, DefaultMonitorInterval)
	c.Timeout = cmp.Or(c.Timeout, DefaultMonitorTimeout)
	c.TopN = cmp.Or(c.TopN, DefaultMonitorTopN)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate names the first bad field.
func (c MonitorConfig) Validate() error {
	switch {
	case c.Interval < 0:
		return errors.New("monitor.interval: must be positive")
	case c.Timeout < 0:
		return errors.New("monitor.timeout: must be positive")
	case c.TopN < 0 || c.TopN > 1000:
		return errors.New("monitor.top_n: must be between 1 and 1000")
	}
	if c.DSN != "" {
		if _, err := pgx.ParseConfig(c.DSN); err != nil {
			return fmt.Errorf("monitor.dsn: %v", redactDSNError(err))
		}
	}
	return nil
}

// redactDSNError keeps a DSN parse error from echoing a password.
func redactDSNError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "password"); i >= 0 {
		return "cannot parse the connection string (check its syntax; it is not shown because it may hold a password)"
	}
	return msg
}

// Session is one server session as the monitor saw it.
type Session struct {
	PID         int
	User        string
	Database    string
	Application string
	Client      string
	State       string
	BackendType string
	// XactAge, StateAge: seconds since the transaction / the state began
	// (negative when unknown).
	XactAge, StateAge float64
	QueryStart        time.Time
	Query             string
	// The lock it waits for, when it waits for one.
	Waiting  bool
	WaitMode string
	WaitType string // pg_locks.locktype
	Relation string // for relation locks
	WaitAge  float64
	// BlockedBy are the pids pg_blocking_pids names (0: a prepared transaction).
	BlockedBy []int
}

// Snapshot is what one poll saw.
type Snapshot struct {
	Taken    time.Time
	Sessions map[int]*Session
	// Roots are the sessions that block others and wait for nobody (the
	// heads of the blocking trees), worst first.
	Roots []int
	// Blocks lists, for each blocker, the sessions waiting on it directly.
	Blocks map[int][]int
	// Err is why the last poll failed ("" when it worked).
	Err string
}

// LockMonitor polls the server; see the comment at the top of this file.
type LockMonitor struct {
	cfg MonitorConfig
	log *slog.Logger

	conn    *pgx.Conn
	version int // server_version_num
	running atomic.Bool
	snap    atomic.Pointer[Snapshot]
	lastOK  atomic.Int64 // unix nanoseconds of the last good poll

	up            prometheus.Gauge
	polls         prometheus.Counter
	pollErrors    prometheus.Counter
	skipped       prometheus.Counter
	pollDuration  prometheus.Histogram
	waitingByMode *prometheus.GaugeVec
	longest       prometheus.Gauge
	ddlWaiting    prometheus.Gauge
	ddlLongest    prometheus.Gauge
	blocking      *prometheus.GaugeVec
	blocked       *prometheus.GaugeVec
	perBlocker    *prometheus.GaugeVec
	perRelation   *prometheus.GaugeVec
	oldestXact    prometheus.Gauge
	idleInXact    prometheus.Gauge
	idleLongest   prometheus.Gauge

	mu       sync.Mutex
	seenMode map[[2]string]bool // (mode, locktype) series kept at 0 once seen
}

// blockerStates are pg_stat_activity states that get a series at 0 from
// the start, so alerts and dashboards see 0 rather than nothing.
var blockerStates = []string{"active", "idle", "idle in transaction", "idle in transaction (aborted)", "prepared transaction"}

// NewLockMonitor registers the monitor's collectors with reg. Run starts it.
func NewLockMonitor(reg prometheus.Registerer, cfg MonitorConfig) (*LockMonitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f := factory{reg}
	m := &LockMonitor{cfg: cfg, log: cfg.Logger, seenMode: map[[2]string]bool{},
		up:         f.gauge("monitor_up", "1 when the lock monitor's last poll of the upstream succeeded."),
		polls:      f.counter("monitor_polls_total", "Lock monitor polls started."),
		pollErrors: f.counter("monitor_poll_errors_total", "Lock monitor polls that failed (connection or query)."),
		skipped:    f.counter("monitor_polls_skipped_total", "Lock monitor ticks skipped because the previous poll was still running."),
		pollDuration: f.histogram("monitor_poll_duration_seconds", "Duration of lock monitor polls.",
			[]float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
		waitingByMode: f.gaugeVec("lock_waiting_sessions", "Sessions waiting for a lock now, by requested mode and lock type (pg_locks.locktype).", "mode", "locktype"),
		longest:       f.gauge("lock_wait_longest_seconds", "The longest current lock wait."),
		ddlWaiting:    f.gauge("lock_waiting_ddl_sessions", "Sessions running DDL (ALTER, CREATE, DROP, TRUNCATE, REINDEX, ...) that wait for a lock now."),
		ddlLongest:    f.gauge("lock_wait_longest_ddl_seconds", "The longest current lock wait of a DDL statement."),
		blocking:      f.gaugeVec("blocking_sessions", "Sessions that block at least one other session, by their state (pg_stat_activity.state, or prepared transaction).", "state"),
		blocked:       f.gaugeVec("blocked_sessions", "Sessions waiting for a lock, by the state of the session at the head of their blocking chain.", "blocker_state"),
		perBlocker:    f.gaugeVec("blocker_blocked_sessions", "Sessions blocked (directly or through a queue) by each of the top blockers.", "blocker_pid", "blocker_state"),
		perRelation:   f.gaugeVec("lock_waiting_relation_sessions", "Sessions waiting for a lock on each of the relations with most waiters.", "relation"),
		oldestXact:    f.gauge("oldest_transaction_age_seconds", "Age of the oldest open transaction of a client session."),
		idleInXact:    f.gauge("idle_in_transaction_sessions", "Client sessions idle in a transaction now."),
		idleLongest:   f.gauge("idle_in_transaction_longest_seconds", "How long the longest idle-in-transaction session has been idle."),
	}
	for _, s := range blockerStates {
		m.blocking.WithLabelValues(s)
		m.blocked.WithLabelValues(s)
	}
	return m, nil
}

// Snapshot returns the last poll's view (nil before the first poll).
func (m *LockMonitor) Snapshot() *Snapshot { return m.snap.Load() }

// Healthy reports whether a poll succeeded within the last three intervals.
func (m *LockMonitor) Healthy() bool {
	last := m.lastOK.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < 3*m.cfg.Interval+m.cfg.Timeout
}

// Run polls until ctx ends.
func (m *LockMonitor) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func() {
		if !m.running.CompareAndSwap(false, true) {
			m.skipped.Inc()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer m.running.Store(false)
			m.Poll(ctx)
		}()
	}
	start()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			start()
		}
	}
	// (the deferred Wait lets a running poll finish with ctx cancelled)
}

// Poll runs one poll now (Run calls it on every tick).
func (m *LockMonitor) Poll(ctx context.Context) {
	m.polls.Inc()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	snap, err := m.query(ctx)
	m.pollDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		m.pollErrors.Inc()
		m.up.Set(0)
		if m.conn != nil {
			m.conn.Close(context.Background())
			m.conn = nil
		}
		m.log.Warn("lock monitor poll failed", "err", err)
		prev := m.snap.Load()
		failed := &Snapshot{Taken: time.Now(), Err: err.Error()}
		if prev != nil {
			failed.Sessions, failed.Roots, failed.Blocks = prev.Sessions, prev.Roots, prev.Blocks
		}
		m.snap.Store(failed)
		return
	}
	m.publish(snap)
	m.snap.Store(snap)
	m.up.Set(1)
	m.lastOK.Store(time.Now().UnixNano())
}

// Close drops the monitor's connection.
func (m *LockMonitor) Close() {
	if m.conn != nil && !m.running.Load() {
		m.conn.Close(context.Background())
		m.conn = nil
	}
}

func (m *LockMonitor) connect(ctx context.Context) error {
	if m.conn != nil {
		return nil
	}
	if m.cfg.DSN == "" {
		return errors.New("no monitor.dsn configured")
	}
	cc, err := pgx.ParseConfig(m.cfg.DSN)
	if err != nil {
		return fmt.Errorf("monitor.dsn: %s", redactDSNError(err))
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "ddlguard-monitor"
	}
	// The monitor must never wait for a lock itself.
	cc.RuntimeParams["lock_timeout"] = "1s"
	cc.RuntimeParams["statement_timeout"] = fmt.Sprint(m.cfg.Timeout.Milliseconds())
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&m.version); err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("server version: %w", err)
	}
	m.conn = conn
	return nil
}

// activityQuery lists client sessions with the lock each waits for and
// who blocks it. Relation names resolve only for the monitor's own
// database; others show as database/oid.
func activityQuery(version int) string {
	waitStart := "a.query_start" // before PostgreSQL 14, pg_locks has no waitstart
	if version >= 140000 {
		waitStart = "coalesce(l.waitstart, a.query_start)"
	}
	return `/* ddlguard lock monitor */
SELECT a.pid, coalesce(a.usename, ''), coalesce(a.datname, ''), coalesce(a.application_name, ''),
  CASE WHEN a.client_port = -1 THEN 'local' WHEN a.client_addr IS NULL THEN '' ELSE host(a.client_addr) || ':' || a.client_port END,
  coalesce(a.state, ''), coalesce(a.backend_type, ''),
  coalesce(extract(epoch FROM clock_timestamp() - a.xact_start)::float8, -1),
  coalesce(extract(epoch FROM clock_timestamp() - a.state_change)::float8, -1),
  a.query_start, left(coalesce(a.query, ''), 1000),
  w.mode IS NOT NULL, coalesce(w.mode, ''), coalesce(w.locktype, ''), coalesce(w.relation, ''), coalesce(w.age, 0),
  CASE WHEN w.mode IS NOT NULL THEN pg_blocking_pids(a.pid) ELSE '{}'::int[] END
FROM pg_catalog.pg_stat_activity a
LEFT JOIN LATERAL (
  SELECT l.mode, l.locktype,
    CASE WHEN l.relation IS NULL THEN NULL
      WHEN l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database()) THEN l.relation::regclass::text
      ELSE coalesce((SELECT d.datname FROM pg_catalog.pg_database d WHERE d.oid = l.database), '?') || '/' || l.relation END AS relation,
    extract(epoch FROM clock_timestamp() - ` + waitStart + `)::float8 AS age
  FROM pg_catalog.pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) w ON true
WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'`
}

func (m *LockMonitor) query(ctx context.Context) (*Snapshot, error) {
	if err := m.connect(ctx); err != nil {
		return nil, err
	}
	rows, err := m.conn.Query(ctx, activityQuery(m.version))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	snap := &Snapshot{Taken: time.Now(), Sessions: map[int]*Session{}, Blocks: map[int][]int{}}
	for rows.Next() {
		s := &Session{}
		var qs *time.Time
		var blockedBy []int32
		if err := rows.Scan(&s.PID, &s.User, &s.Database, &s.Application, &s.Client, &s.State, &s.BackendType,
			&s.XactAge, &s.StateAge, &qs, &s.Query, &s.Waiting, &s.WaitMode, &s.WaitType, &s.Relation, &s.WaitAge, &blockedBy); err != nil {
			return nil, err
		}
		if qs != nil {
			s.QueryStart = *qs
		}
		for _, b := range blockedBy {
			s.BlockedBy = append(s.BlockedBy, int(b))
		}
		snap.Sessions[s.PID] = s
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	snap.buildTree()
	return snap, nil
}

// stateOf is the state shown for a blocker pid (0: a prepared transaction,
// or a session the monitor does not list, such as an autovacuum worker).
func (s *Snapshot) stateOf(pid int) string {
	if pid == 0 {
		return "prepared transaction"
	}
	if x, ok := s.Sessions[pid]; ok && x.State != "" {
		return x.State
	}
	return "other"
}

// statePriority orders blockers for on-call: a session idle in a
// transaction is the usual culprit.
func statePriority(state string) int {
	switch state {
	case "idle in transaction":
		return 0
	case "idle in transaction (aborted)":
		return 1
	case "prepared transaction":
		return 2
	case "active":
		return 3
	}
	return 4
}

// buildTree fills Blocks and Roots.
func (s *Snapshot) buildTree() {
	for _, x := range s.Sessions {
		for _, b := range x.BlockedBy {
			s.Blocks[b] = append(s.Blocks[b], x.PID)
		}
	}
	for b := range s.Blocks {
		slices.Sort(s.Blocks[b])
		if x, ok := s.Sessions[b]; !ok || !x.Waiting {
			s.Roots = append(s.Roots, b)
		}
	}
	slices.SortFunc(s.Roots, func(a, b int) int {
		return cmp.Or(cmp.Compare(statePriority(s.stateOf(a)), statePriority(s.stateOf(b))),
			cmp.Compare(len(s.blockedBy(b)), len(s.blockedBy(a))), cmp.Compare(a, b))
	})
}

// blockedBy is every session waiting behind pid, directly or through others.
func (s *Snapshot) blockedBy(pid int) map[int]bool {
	out := map[int]bool{}
	stack := []int{pid}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, w := range s.Blocks[p] {
			if !out[w] && w != pid {
				out[w] = true
				stack = append(stack, w)
			}
		}
	}
	return out
}

// headState is the state of the worst head of x's blocking chains.
func (s *Snapshot) headState(x *Session) string {
	best, seen := "", map[int]bool{x.PID: true}
	stack := append([]int(nil), x.BlockedBy...)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		if y, ok := s.Sessions[p]; ok && y.Waiting && len(y.BlockedBy) > 0 {
			stack = append(stack, y.BlockedBy...)
			continue
		}
		if st := s.stateOf(p); best == "" || statePriority(st) < statePriority(best) {
			best = st
		}
	}
	if best == "" {
		best = "other" // a cycle (a deadlock about to be broken)
	}
	return best
}

// ddlKeywords start the statements the DDL gauges count.
var ddlKeywords = []string{"alter", "create", "drop", "truncate", "reindex", "cluster", "vacuum", "refresh", "lock", "comment", "grant", "revoke"}

// isDDL reports whether a query text starts with a DDL keyword (after
// comments and blanks).
func isDDL(q string) bool {
	for {
		q = strings.TrimLeft(q, " \t\r\n(")
		end := ""
		switch {
		case strings.HasPrefix(q, "--"):
			end = "\n"
		case strings.HasPrefix(q, "/*"):
			end = "*/"
		}
		if end == "" {
			break
		}
		_, rest, ok := strings.Cut(q, end) // a comment: skip it
		if !ok {
			return false
		}
		q = rest
	}
	end := strings.IndexFunc(q, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') })
	if end < 0 {
		end = len(q)
	}
	return slices.Contains(ddlKeywords, strings.ToLower(q[:end]))
}

// publish sets the gauges from a snapshot.
func (m *LockMonitor) publish(s *Snapshot) {
	byMode := map[[2]string]int{}
	perRelation := map[string]int{}
	var longest, ddlLongest, oldest, idleLongest float64
	ddl, idle := 0, 0
	blockedByState := map[string]int{}
	for _, x := range s.Sessions {
		if x.XactAge > oldest {
			oldest = x.XactAge
		}
		if strings.HasPrefix(x.State, "idle in transaction") {
			idle++
			idleLongest = max(idleLongest, x.StateAge)
		}
		if !x.Waiting {
			continue
		}
		byMode[[2]string{x.WaitMode, x.WaitType}]++
		longest = max(longest, x.WaitAge)
		if x.Relation != "" {
			perRelation[x.Relation]++
		}
		if isDDL(x.Query) {
			ddl++
			ddlLongest = max(ddlLongest, x.WaitAge)
		}
		if len(x.BlockedBy) > 0 {
			blockedByState[s.headState(x)]++
		}
	}
	m.mu.Lock()
	for k := range byMode {
		m.seenMode[k] = true
	}
	for k := range m.seenMode {
		m.waitingByMode.WithLabelValues(k[0], k[1]).Set(float64(byMode[k]))
	}
	m.mu.Unlock()
	m.longest.Set(longest)
	m.ddlWaiting.Set(float64(ddl))
	m.ddlLongest.Set(ddlLongest)
	m.oldestXact.Set(oldest)
	m.idleInXact.Set(float64(idle))
	m.idleLongest.Set(idleLongest)

	blockingByState := map[string]int{}
	type blockerCount struct {
		pid, n int
		state  string
	}
	var blockers []blockerCount
	for b := range s.Blocks {
		st := s.stateOf(b)
		blockingByState[st]++
		blockers = append(blockers, blockerCount{b, len(s.blockedBy(b)), st})
	}
	setStates(m.blocking, blockingByState)
	setStates(m.blocked, blockedByState)

	slices.SortFunc(blockers, func(a, b blockerCount) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.pid, b.pid)) })
	m.perBlocker.Reset()
	for _, b := range blockers[:min(len(blockers), m.cfg.TopN)] {
		m.perBlocker.WithLabelValues(fmt.Sprint(b.pid), b.state).Set(float64(b.n))
	}
	type relCount struct {
		rel string
		n   int
	}
	var rels []relCount
	for r, n := range perRelation {
		rels = append(rels, relCount{r, n})
	}
	slices.SortFunc(rels, func(a, b relCount) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.rel, b.rel)) })
	m.perRelation.Reset()
	for _, r := range rels[:min(len(rels), m.cfg.TopN)] {
		m.perRelation.WithLabelValues(r.rel).Set(float64(r.n))
	}
}

// setStates sets a by-state gauge: the fixed states always (0 when none),
// other states while they occur.
func setStates(g *prometheus.GaugeVec, counts map[string]int) {
	g.Reset()
	for _, st := range blockerStates {
		g.WithLabelValues(st).Set(float64(counts[st]))
	}
	for st, n := range counts {
		if !slices.Contains(blockerStates, st) {
			g.WithLabelValues(st).Set(float64(n))
		}
	}
}
