#!/usr/bin/env bash
# Install the Node.js migration tool the e2e tests drive through ddlguard
# (e2e/rewrite_test.go, TestRewriteNodePgMigrate) and print the path of its
# command.
#
#   scripts/install-node-tools.sh
#
# The last line on stdout is the node-pg-migrate command (a file to run with
# node); progress goes to stderr. Pinned versions (bump both here only):
#
#   node-pg-migrate 7.9.1   (needs node >= 18.19: Debian 12's nodejs works)
#   pg              8.16.3  (node-postgres, its driver; a peer dependency)
#
# Where it goes: $DDLGUARD_NODE_CACHE when set, else <repo>/.cache/node
# (ignored by git). Idempotent and fast once installed: the npm registry is
# asked only when the installed versions are not the pinned ones.
set -euo pipefail

NODE_PG_MIGRATE_VERSION=7.9.1
PG_VERSION=8.16.3

log() { printf 'install-node-tools: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

command -v node >/dev/null 2>&1 || die "node is not installed (scripts/install-deps.sh installs it)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (scripts/install-deps.sh installs it)"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${DDLGUARD_NODE_CACHE:-$repo/.cache/node}"
bin="$prefix/node_modules/node-pg-migrate/bin/node-pg-migrate.js"

# installed NAME: the version of NAME under $prefix, or nothing.
installed() {
	local pkg="$prefix/node_modules/$1/package.json"
	[[ -f "$pkg" ]] || return 0
	node -e 'process.stdout.write(require(process.argv[1]).version)' "$pkg"
}

if [[ "$(installed node-pg-migrate)" != "$NODE_PG_MIGRATE_VERSION" || "$(installed pg)" != "$PG_VERSION" || ! -f "$bin" ]]; then
	log "npm install node-pg-migrate@$NODE_PG_MIGRATE_VERSION pg@$PG_VERSION into $prefix"
	mkdir -p "$prefix"
	npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
		"node-pg-migrate@$NODE_PG_MIGRATE_VERSION" "pg@$PG_VERSION" >&2 ||
		die "npm install failed (see above)"
fi
[[ -f "$bin" ]] || die "$bin is missing after npm install"
version="$(installed node-pg-migrate)"
[[ "$version" == "$NODE_PG_MIGRATE_VERSION" && "$(installed pg)" == "$PG_VERSION" ]] ||
	die "installed node-pg-migrate '$version', pg '$(installed pg)'; want $NODE_PG_MIGRATE_VERSION, $PG_VERSION"
node "$bin" --help >/dev/null 2>&1 || die "node $bin --help fails: $(node "$bin" --help 2>&1 | tail -n 5)"
log "node-pg-migrate $version, pg $(installed pg), node $(node --version) in $prefix"
printf '%s\n' "$bin"
