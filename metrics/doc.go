// Package metrics is what ddlguard exports about itself and the database:
// the Prometheus collectors for the proxy's and the guard's events (Proxy,
// the proxy's Observer, which also keeps the recent decisions in Recent),
// the lock monitor that polls pg_stat_activity and pg_locks on a connection
// of its own (LockMonitor), the upstream probe and readiness (UpstreamProbe,
// Ready), and the admin HTTP listener serving /metrics, /healthz, /readyz
// and the /locks page (Admin).
//
// It must not know protocol framing or how statements are decided: the
// proxy reports events through plain method calls with proxy.DecisionEvent
// values, and the binary wires the pieces together.
package metrics
