package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ddlguard/ddlguard/metrics"
)

// observability is what serve runs beside the proxy: the collectors, the
// upstream probe, the lock monitor (with monitor.dsn) and the admin
// listener (unless admin.listen is off).
type observability struct {
	proxy  *metrics.Proxy
	ready  *metrics.Ready
	admin  *metrics.Admin
	cancel context.CancelFunc
	done   chan struct{}
}

// recentDecisions is how many decisions /locks lists.
const recentDecisions = 50

// startObservability registers the collectors, starts the upstream probe
// (of upstream), the lock monitor (when mc has a DSN) and the admin
// listener (when ac is enabled). Its errors are configErrors: an address
// that does not bind, a monitor that cannot be set up.
func startObservability(ac metrics.AdminConfig, mc metrics.MonitorConfig, upstream string, logger *slog.Logger) (*observability, error) {
	var err error
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	recent := metrics.NewRecent(recentDecisions)
	o := &observability{proxy: metrics.NewProxy(reg, version, recent), done: make(chan struct{})}
	probe := metrics.NewUpstreamProbe(reg, upstream)
	o.ready = &metrics.Ready{Probe: probe}
	var mon *metrics.LockMonitor
	if mc.DSN != "" {
		if mon, err = metrics.NewLockMonitor(reg, mc); err != nil {
			return nil, &configError{err.Error()}
		}
		o.ready.Monitor = mon
	}
	if ac.Enabled() {
		if o.admin, err = metrics.NewAdmin(ac, reg, o.ready, mon, recent, logger); err != nil {
			return nil, &configError{err.Error()}
		}
		if err := o.admin.Start(); err != nil {
			return nil, &configError{err.Error()}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	go func() {
		defer close(o.done)
		if mon != nil {
			go probe.Run(ctx)
			mon.Run(ctx)
			mon.Close()
			return
		}
		probe.Run(ctx)
	}()
	return o, nil
}

// configLoaded records a configuration load (start, SIGHUP).
func (o *observability) configLoaded(ok bool) {
	o.proxy.ConfigLoaded(ok)
	if ok {
		o.ready.SetConfigLoaded(true)
	}
}

// setDraining makes /readyz fail and ddlguard_draining 1.
func (o *observability) setDraining() {
	o.ready.SetDraining(true)
	o.proxy.SetDraining(true)
}

func (o *observability) close() {
	o.cancel()
	<-o.done
	if o.admin != nil {
		o.admin.Close()
	}
}
