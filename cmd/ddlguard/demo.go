package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/metrics"
	"github.com/ddlguard/ddlguard/proxy"
)

// adminText tells where the demo's admin pages are.
func adminText(obs *observability) string {
	if obs.admin == nil {
		return ""
	}
	a := obs.admin.Addr()
	return fmt.Sprintf(`
Watch it: the live lock page http://%s/locks (blocking tree, recent decisions)
and the Prometheus metrics http://%s/metrics (e.g. ddlguard_statements_total).
`, a, a)
}

// demo starts a throwaway PostgreSQL cluster, runs ddlguard in front of it
// with the zero-configuration defaults, prints how to connect, and removes
// everything on SIGINT/SIGTERM (or after --duration).
func demo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ddlguard demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", proxy.DefaultListen, "client-facing address HOST:PORT")
	duration := fs.Duration("duration", 0, "stop after this long (default: run until interrupted)")
	adminListen := fs.String("admin-listen", metrics.DefaultAdminListen, "admin HTTP address for /metrics and /locks, or off")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	fmt.Fprintln(stdout, "starting a throwaway PostgreSQL cluster...")
	cluster, err := pgcluster.Start(pgcluster.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard demo: starting PostgreSQL:", err)
		return exitFailed
	}
	defer cluster.Stop()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "ddlguard demo: listen on %s: %v (pick another address with --listen)\n", *listen, err)
		return exitFailed
	}
	g, err := guard.New(guard.DefaultConfig())
	if err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "ddlguard demo:", err)
		return exitFailed
	}
	// The admin listener and the lock monitor, as `serve` runs them; the
	// monitor uses the throwaway cluster's superuser.
	ocfg := defaultConfig()
	ocfg.Upstream, ocfg.Admin.Listen = cluster.Addr(), *adminListen
	ocfg.Monitor.DSN = cluster.DSN(pgcluster.Superuser, pgcluster.AppDatabase, "sslmode", "disable", "application_name", "ddlguard-monitor")
	obs, err := startDemoObservability(ocfg, logger)
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "ddlguard demo: %v (pick another address with --admin-listen, or off)\n", err)
		return exitFailed
	}
	defer obs.close()
	obs.configLoaded(true)
	srv, err := proxy.New(proxy.Config{Listen: *listen, Upstream: cluster.Addr(), Logger: logger, Guard: g, Observer: obs.proxy})
	if err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "ddlguard demo:", err)
		return exitFailed
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer srv.Close()

	addr := ln.Addr().(*net.TCPAddr)
	fmt.Fprintf(stdout, `
PostgreSQL %d is running at %s; ddlguard listens at %s in front of it.
Connect through ddlguard with:

  psql "host=%s port=%d user=%s password=%s dbname=%s"

Try a statement ddlguard refuses, and its safe form:

  CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000000) g; VACUUM ANALYZE t;
  ALTER TABLE t ADD COLUMN created timestamptz DEFAULT clock_timestamp();
  CREATE INDEX CONCURRENTLY t_id_idx ON t (id);

%s
Press Ctrl-C to stop and remove the cluster.
`, cluster.Version(), cluster.Addr(), addr, addr.IP, addr.Port,
		pgcluster.RoleSCRAM, pgcluster.PasswordSCRAM, pgcluster.AppDatabase, adminText(obs))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var timeout <-chan time.Time
	if *duration > 0 {
		timeout = time.After(*duration)
	}
	select {
	case <-sig:
	case <-timeout:
	case err := <-errc:
		if !errors.Is(err, proxy.ErrServerClosed) {
			fmt.Fprintln(stderr, "ddlguard demo:", err)
			return exitFailed
		}
	}
	fmt.Fprintln(stdout, "stopping")
	return exitOK
}

// startDemoObservability validates the admin and monitor sections of cfg
// and starts them as serve does.
func startDemoObservability(cfg Config, logger *slog.Logger) (*observability, error) {
	ac, mc, err := cfg.observabilityConfigs(logger)
	if err != nil {
		return nil, err
	}
	return startObservability(ac, mc, cfg.Upstream, logger)
}
