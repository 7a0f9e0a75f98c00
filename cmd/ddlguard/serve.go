package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ddlguard/ddlguard/proxy"
)

// serve runs the proxy with the configuration loadConfig assembles, beside
// its observability, until SIGTERM or SIGINT drains it; SIGHUP reloads.
func serve(args []string, stderr io.Writer) int {
	f, err := parseServeFlags("serve", args, stderr)
	if err != nil {
		return exitConfig
	}
	loaded, err := loadConfig(f, os.Environ(), os.Stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	logger := loaded.logger
	// Signals are caught from here on: a SIGTERM that arrives while the
	// listeners start is handled as a drain, not the default exit.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	obs, err := startObservability(loaded.admin, loaded.monitor, loaded.settings.Upstream, logger)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	defer obs.close()
	pc := loaded.proxy
	pc.Observer = obs.proxy
	srv, err := proxy.New(pc)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	obs.configLoaded(true)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	var drained chan struct{} // set once a shutdown began
	for {
		select {
		case err := <-errc:
			if drained != nil && errors.Is(err, proxy.ErrServerClosed) {
				continue // the drain closed the listener
			}
			logger.Error("serve failed", "err", err)
			return exitFailed
		case <-drained:
			logger.Info("shut down")
			return exitOK
		case s := <-sig:
			if s == syscall.SIGHUP {
				obs.configLoaded(reload(f, loaded.settings, srv, logger))
				continue
			}
			if drained != nil {
				logger.Warn("second signal: exiting at once", "signal", s.String())
				srv.Close()
				return exitOK
			}
			drained = make(chan struct{})
			go shutdown(loaded.settings.Shutdown, srv, obs, logger, s, drained)
		}
	}
}

// shutdown drains srv: readiness fails at once, the listener closes after
// shutdown.delay (so load balancers stop routing first), sessions finish
// their statements and transactions for up to shutdown.drain_timeout, and
// the rest are closed with FATAL 57P01.
func shutdown(sc ShutdownConfig, srv *proxy.Server, obs *observability, logger *slog.Logger, s os.Signal, done chan struct{}) {
	defer close(done)
	logger.Info("shutting down: not ready; draining", "signal", s.String(), "delay", sc.Delay, "drain_timeout", sc.DrainTimeout)
	obs.setDraining()
	time.Sleep(sc.Delay)
	ctx, cancel := context.WithTimeout(context.Background(), sc.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("drain timeout reached; remaining sessions were closed", "drain_timeout", sc.DrainTimeout)
	}
}
