// Package pgcluster starts and owns throwaway PostgreSQL clusters for
// ddlguard's end-to-end tests and for the `ddlguard demo` command.
//
// A cluster lives entirely inside one fresh temporary directory:
//
//	<Dir>/               unix socket directory (owned by the server's OS user)
//	<Dir>/data/          PGDATA, created by initdb
//	<Dir>/tls/           test CA, server cert, ddlguard "proxy" cert, other CA
//	<Dir>/postgres.log   server log (pg_ctl -l)
//
// The server listens on 127.0.0.1 on a free port, with TLS enabled and a
// pg_hba.conf that gives each well-known role its own authentication method:
//
//	app_trust      trust
//	app_password   password (cleartext)
//	app_md5        md5 (stored hash is md5)
//	app_scram      scram-sha-256
//	app_scram_ssl  scram-sha-256 over TLS only (non-TLS is rejected)
//	anyone else    scram-sha-256 (including the superuser "postgres")
//
// Passwords are the exported constants of this package (see Passwords) and
// Cluster.DSN builds a libpq key=value connection string for any of them.
//
// The package needs real PostgreSQL server binaries (initdb, pg_ctl,
// postgres). They are taken from Options.BinDir when set, else looked up in
// $PG_BIN, then `pg_config --bindir`, then the highest
// /usr/lib/postgresql/*/bin. Missing binaries are an error, never a reason to
// skip: run scripts/install-deps.sh (or `make deps`). Other majors come from
// scripts/install-pg-major.sh MAJOR, which prints a bin directory for
// Options.BinDir or PG_BIN.
//
// When the calling process runs as root, the server programs are run as the
// "postgres" OS user (PostgreSQL refuses to run as root) and the cluster's
// files are chowned accordingly; files meant for the caller (CA, proxy
// certificate and key, log) stay readable by the caller.
//
// The package owns nothing outside its temporary directory. Stop shuts the
// server down (immediate mode) and removes the directory. If the calling
// process dies before Stop, the server keeps running and the directory stays;
// they can be found under $TMPDIR as ddlguard-pg-*.
package pgcluster
