package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// Startup parameters reach the server as the client sent them: `options`
// (command-line switches), application_name, any GUC, and the server's own
// verdict on an unknown one.
func TestStartupParametersRelayed(t *testing.T) {
	p := startProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := p.Connect(t, pgcluster.RoleSCRAM, "app", "sslmode", "disable",
		"options", "-c lock_timeout=1234 -c statement_timeout=5min",
		"application_name", "startup-test", "search_path", "pg_catalog")
	var lockTimeout, stmtTimeout, appName, searchPath string
	err := conn.QueryRow(ctx, `SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),
		application_name, current_setting('search_path') FROM pg_stat_activity WHERE pid = pg_backend_pid()`).
		Scan(&lockTimeout, &stmtTimeout, &appName, &searchPath)
	if err != nil {
		t.Fatal(err)
	}
	if lockTimeout != "1234ms" || stmtTimeout != "5min" || appName != "startup-test" || searchPath != "pg_catalog" {
		t.Fatalf("server saw lock_timeout=%s statement_timeout=%s application_name=%s search_path=%s",
			lockTimeout, stmtTimeout, appName, searchPath)
	}

	_, err = pgx.Connect(ctx, p.DSN(pgcluster.RoleSCRAM, "app", "sslmode", "disable", "no_such_setting", "1"))
	if pe := pgErrorOf(err); pe == nil || pe.Code != "42704" || pe.Severity != "FATAL" {
		t.Fatalf("unknown startup parameter: got %v, want the server's FATAL 42704", err)
	}
}
