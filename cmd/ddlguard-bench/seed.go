package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// The seed scenario's fixed timeline, relative to the moment the blocker
// holds its lock.
const (
	ddlDelay   = 500 * time.Millisecond // the DDL is sent this long after
	readerTail = 2 * time.Second        // readers go on this long after the blocker commits
	// runSlack bounds a run beyond hold + tail + ddlguard's retry budget.
	runSlack = 15 * time.Second
)

const (
	readerSQL  = "SELECT count(*) FROM t WHERE id < 100"
	readerWant = 99 // ids are 1..rows, rows >= minRows
	blockerSQL = "SELECT count(*) FROM t"
	minRows    = 100
	// tableTarget is the size the padding aims at: comfortably above the
	// guard's small-table threshold, so that t is decided as a big table.
	tableTarget = guard.DefaultSmallTableBytes + 2<<20
	ddlOK       = "ok"
)

// seedOptions are the flags of `ddlguard-bench seed`.
type seedOptions struct {
	readers int
	hold    time.Duration
	rows    int
}

func (o seedOptions) validate() error {
	if o.readers < 1 {
		return fmt.Errorf("--readers must be at least 1 (got %d)", o.readers)
	}
	if o.hold <= ddlDelay {
		return fmt.Errorf("--hold must be longer than %s, when the DDL is sent (got %s)", ddlDelay, o.hold)
	}
	if o.rows < minRows {
		return fmt.Errorf("--rows must be at least %d (got %d)", minRows, o.rows)
	}
	return nil
}

// pathResult is what one run of the scenario measured.
type pathResult struct {
	Path      string  `json:"path"`
	Queries   int     `json:"queries"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	DDLWaitMs float64 `json:"ddl_wait_ms"`
	DDL       string  `json:"ddl"` // "ok" or the SQLSTATE it failed with
	DDLError  string  `json:"ddl_error,omitempty"`
}

// seedReport is the whole benchmark's output.
type seedReport struct {
	Scenario      string       `json:"scenario"`
	Readers       int          `json:"readers"`
	Hold          string       `json:"hold"`
	Rows          int          `json:"rows"`
	PostgreSQL    string       `json:"postgresql"`
	TableBytes    int64        `json:"table_bytes"`
	Paths         []pathResult `json:"paths"`
	MaxStallRatio float64      `json:"max_reader_stall_ratio"`
}

// runSeed starts PostgreSQL and ddlguard, builds table t, runs the scenario
// directly and through ddlguard, and tears everything down. Progress goes to
// logw.
func runSeed(ctx context.Context, opts seedOptions, logw io.Writer) (_ *seedReport, err error) {
	progress := func(format string, args ...any) {
		fmt.Fprintf(logw, "ddlguard-bench: "+format+"\n", args...)
	}

	progress("starting a throwaway PostgreSQL")
	cluster, err := pgcluster.Start(pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := cluster.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping PostgreSQL: %w", stopErr))
		}
	}()
	directDSN := cluster.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase, "sslmode", "disable")

	progress("creating table t (%d rows)", opts.rows)
	version, size, err := prepareTable(ctx, directDSN, opts.rows)
	if err != nil {
		return nil, fmt.Errorf("preparing table t: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ddlguard listener: %w", err)
	}
	g, err := guard.New(guard.DefaultConfig())
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv, err := proxy.New(proxy.Config{
		Listen:   ln.Addr().String(),
		Upstream: cluster.Addr(),
		Logger:   slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Guard:    g,
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		if e := <-serveErr; e != nil && !errors.Is(e, proxy.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("ddlguard: %w", e))
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	guardDSN := cluster.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase,
		"host", addr.IP.String(), "port", strconv.Itoa(addr.Port), "sslmode", "disable")

	rep := &seedReport{
		Scenario:   "seed",
		Readers:    opts.readers,
		Hold:       opts.hold.String(),
		Rows:       opts.rows,
		PostgreSQL: version,
		TableBytes: size,
	}
	for _, path := range []struct{ name, dsn string }{{"direct", directDSN}, {"ddlguard", guardDSN}} {
		progress("run %s: blocker holds t for %s, %d readers, DDL after %s", path.name, opts.hold, opts.readers, ddlDelay)
		res, err := runScenario(ctx, path.name, path.dsn, directDSN, opts)
		if err != nil {
			return nil, fmt.Errorf("%s run: %w", path.name, err)
		}
		rep.Paths = append(rep.Paths, res)
	}
	if direct := rep.Paths[0].MaxMs; direct > 0 {
		rep.MaxStallRatio = round3(rep.Paths[1].MaxMs / direct)
	}
	return rep, nil
}

// prepareTable creates and fills t, checks it is above the small-table
// threshold, and returns the server version and t's total size.
func prepareTable(ctx context.Context, dsn string, rows int) (version string, size int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", 0, err
	}
	defer conn.Close(context.Background())

	// EXTERNAL storage keeps the padding uncompressed, so its size is what
	// the table occupies (and long padding for few rows moves to TOAST).
	pad := max(16, tableTarget/rows)
	for _, stmt := range []string{
		"CREATE TABLE t (id int PRIMARY KEY, pad text)",
		"ALTER TABLE t ALTER COLUMN pad SET STORAGE EXTERNAL",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return "", 0, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	if _, err := conn.Exec(ctx, "INSERT INTO t SELECT g, repeat('x', $2) FROM generate_series(1, $1::int) g", rows, pad); err != nil {
		return "", 0, fmt.Errorf("filling t: %w", err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE t"); err != nil {
		return "", 0, fmt.Errorf("VACUUM ANALYZE t: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version'), pg_total_relation_size('t')").Scan(&version, &size); err != nil {
		return "", 0, err
	}
	if size <= guard.DefaultSmallTableBytes {
		return "", 0, fmt.Errorf("t is %d bytes, not above the small-table threshold of %d", size, guard.DefaultSmallTableBytes)
	}
	if f := strings.Fields(version); len(f) > 0 {
		version = f[0] // "15.14 (Debian 15.14-1)" -> "15.14"
	}
	return version, size, nil
}

// runScenario runs the seed scenario once: readers and the DDL connect to
// pathDSN, the blocker to blockerDSN (always direct).
func runScenario(parent context.Context, name, pathDSN, blockerDSN string, opts seedOptions) (pathResult, error) {
	res := pathResult{Path: name}
	ctx, cancel := context.WithTimeout(parent, opts.hold+readerTail+proxy.DefaultRetryBudget+runSlack)
	defer cancel()

	// Connect everything first so that connection setup is not measured.
	var conns []*pgx.Conn
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	connect := func(dsn, role string) (*pgx.Conn, error) {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return nil, fmt.Errorf("connecting %s: %w", role, err)
		}
		conns = append(conns, c)
		return c, nil
	}
	blocker, err := connect(blockerDSN, "the blocker")
	if err != nil {
		return res, err
	}
	ddlConn, err := connect(pathDSN, "the DDL session")
	if err != nil {
		return res, err
	}
	readers := make([]*pgx.Conn, opts.readers)
	for i := range readers {
		if readers[i], err = connect(pathDSN, "a reader"); err != nil {
			return res, err
		}
		if err := readOnce(ctx, readers[i]); err != nil { // warm up: prepare, cache
			return res, fmt.Errorf("reader warm-up: %w", err)
		}
	}

	tx, err := blocker.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("blocker: %w", err)
	}
	var n int64
	if err := tx.QueryRow(ctx, blockerSQL).Scan(&n); err != nil {
		return res, fmt.Errorf("blocker: %w", err)
	}
	t0 := time.Now() // the blocker holds ACCESS SHARE on t from here
	end := t0.Add(opts.hold + readerTail)

	var wg sync.WaitGroup
	latencies := make([][]time.Duration, len(readers))
	readErrs := make([]error, len(readers))
	for i, c := range readers {
		wg.Go(func() { latencies[i], readErrs[i] = readLoop(ctx, c, end) })
	}
	var ddlWait time.Duration
	var ddlErr error
	wg.Go(func() {
		if ddlErr = sleepUntil(ctx, t0.Add(ddlDelay)); ddlErr != nil {
			return
		}
		start := time.Now()
		_, ddlErr = ddlConn.Exec(ctx, "ALTER TABLE t ADD COLUMN c_"+name+" int")
		ddlWait = time.Since(start)
	})

	holdErr := sleepUntil(ctx, t0.Add(opts.hold))
	if holdErr == nil {
		holdErr = tx.Commit(ctx)
	} else {
		tx.Rollback(context.Background())
	}
	wg.Wait()

	if err := parent.Err(); err != nil {
		return res, fmt.Errorf("interrupted: %w", err)
	}
	if holdErr != nil {
		return res, fmt.Errorf("blocker: %w", holdErr)
	}
	for _, err := range readErrs {
		if err != nil {
			return res, fmt.Errorf("reader: %w", err)
		}
	}
	res.DDL, res.DDLWaitMs = ddlOK, ms(ddlWait)
	if ddlErr != nil {
		var pgErr *pgconn.PgError
		if !errors.As(ddlErr, &pgErr) {
			return res, fmt.Errorf("DDL: %w", ddlErr)
		}
		res.DDL, res.DDLError = pgErr.Code, pgErr.Message
	}

	all := slices.Concat(latencies...)
	if len(all) == 0 {
		return res, errors.New("the readers completed no query")
	}
	slices.Sort(all)
	res.Queries = len(all)
	res.P50Ms, res.P99Ms, res.MaxMs = ms(percentile(all, 50)), ms(percentile(all, 99)), ms(all[len(all)-1])
	return res, nil
}

// readLoop runs the reader query back to back until end and returns each
// query's latency. The query in flight at end finishes and is counted.
func readLoop(ctx context.Context, c *pgx.Conn, end time.Time) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, 1<<14)
	for time.Now().Before(end) {
		start := time.Now()
		if err := readOnce(ctx, c); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

func readOnce(ctx context.Context, c *pgx.Conn) error {
	var n int64
	if err := c.QueryRow(ctx, readerSQL).Scan(&n); err != nil {
		return err
	}
	if n != readerWant {
		return fmt.Errorf("%s returned %d, want %d", readerSQL, n, readerWant)
	}
	return nil
}

// sleepUntil waits for t or the context, whichever comes first.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// percentile is the nearest-rank p-th percentile of sorted (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ms converts to milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
