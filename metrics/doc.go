// Package metrics owns ddlguard's Prometheus collectors for proxy and guard
// events and the lock monitor that polls pg_locks and pg_stat_activity on a
// side connection.
//
// It must not know about protocol framing: the proxy reports events to it
// through plain method calls.
//
// The collectors arrive with the metrics issue; this package is empty until
// then.
package metrics
