package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// BenchmarkMigrationHistories is what ddlguard costs a migration: every
// project of the corpus applied (empty database, schema files only) by one
// runner, directly and through an in-process ddlguard with no
// configuration, alternately, b.N times each. Both legs are plaintext (the
// direct runner connects with sslmode=disable, ddlguard's upstream leg
// too), so the figures are ddlguard's work, not TLS handshakes. It reports
// the wall time of one pass over the corpus both ways, their ratio and the
// time added per statement (make bench-migrate).
func BenchmarkMigrationHistories(b *testing.B) {
	for _, kind := range historyRunnerKinds {
		b.Run(kind, func(b *testing.B) {
			projects := loadHistories(b)
			px := startGuardProxy(b, guard.DefaultConfig(), func(c *proxy.Config) { c.UpstreamTLSMode = proxy.UpstreamTLSDisable })
			var direct, guarded time.Duration
			statements := 0
			for i := 0; i < b.N; i++ {
				for _, route := range []string{"direct", "guarded"} {
					for _, p := range projects {
						db := "bench_" + p.name + "_" + kind + "_" + route
						historyDatabase(b, cluster, db)
						dsn := cluster.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable")
						if route == "guarded" {
							dsn = cluster.DSN(pgcluster.RoleSCRAM, db, "host", px.Host, "port", strconv.Itoa(px.Port), "sslmode", "disable")
						}
						r := openHistoryRunner(b, kind, cluster.Psql(), dsn)
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
						begin := time.Now()
						for _, f := range p.files {
							if f.data != dataSchema {
								continue
							}
							if out := r.apply(ctx, f); out != "ok" {
								b.Fatalf("%s/%s %s: %s", p.name, f.name, route, out)
							}
							if route == "direct" && i == 0 {
								statements += historyStatements(b, f)
							}
						}
						took := time.Since(begin)
						cancel()
						r.close()
						if route == "direct" {
							direct += took
						} else {
							guarded += took
						}
					}
				}
			}
			b.ReportMetric(float64(direct.Milliseconds())/float64(b.N), "direct-ms/op")
			b.ReportMetric(float64(guarded.Milliseconds())/float64(b.N), "ddlguard-ms/op")
			b.ReportMetric(float64(guarded)/float64(direct), "ratio")
			b.ReportMetric(float64(statements), "statements")
			b.ReportMetric(float64((guarded-direct).Microseconds())/float64(b.N*statements), "added-us/statement")
		})
	}
}
