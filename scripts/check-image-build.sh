#!/usr/bin/env bash
# Check the container image build without a Docker engine (`make
# check-image`). Fails (exit 1) on the first group of problems it finds.
#
#   scripts/check-image-build.sh [WORKDIR]    # default WORKDIR: .cache/image-check
#
# 1. Lint the Dockerfile for what hadolint would flag and this project's own
#    rules: every base image pinned to a tag (never latest) or digest; the
#    Go image's version equal to go.mod's and both stages on Debian 12; no
#    ADD; a non-root numeric USER in the final stage; apt (if any) with
#    update, --no-install-recommends and the lists removed in the same RUN;
#    no sudo, no `cd` in RUN; ENTRYPOINT/CMD/HEALTHCHECK in exec form
#    (the runtime image has no shell): `ddlguard serve --config
#    /etc/ddlguard/ddlguard.yaml`, a HEALTHCHECK running `ddlguard
#    healthcheck`; EXPOSE 6432 and 6433; the build stage building with
#    scripts/build.sh, which the Makefile's build target uses too (and no
#    other build flags in the Makefile).
# 2. Replay the build stage: copy the build context as .dockerignore filters
#    it into WORKDIR, then run the stage's COPY and RUN instructions in order
#    (WORKDIR /src -> WORKDIR/fs/src), with ARG VERSION set. The RUN commands
#    run with the host's Go (the same version as the image's, step 1 checks
#    that) on the host's glibc (Debian 12 here, as in the image).
# 3. Check the binary the final stage copies: a dynamically linked ELF for
#    this machine with the standard glibc loader; needing only libraries of
#    Debian's libc6 (which the distroless base image has; it has no
#    libstdc++ or libgcc_s); no GLIBC_ symbol version above 2.36 (Debian
#    12's glibc); `ddlguard version` printing the version passed in.
# 4. Smoke-test it as the image runs it: as uid/gid 65532 with an empty
#    environment, `ddlguard serve --config FILE` (listen and admin on
#    loopback ports, an upstream nothing listens on); `ddlguard healthcheck
#    --url .../healthz` exits 0, on /readyz exits 1 (upstream down), on a
#    closed port exits 1; SIGTERM ends serve with exit 0.
#
# Timing: the first build compiles pg_query's C parser (about 1-2 minutes
# on 2 cores); later runs hit Go's build cache (a few seconds; -trimpath
# makes the copy's path irrelevant to the cache).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
work=${1:-$root/.cache/image-check}
PYTHON3=${PYTHON3:-/usr/bin/python3}
[[ -x "$PYTHON3" ]] || PYTHON3=python3

log() { printf 'check-image: %s\n' "$*" >&2; }
die() {
	printf 'check-image: FAIL: %s\n' "$*" >&2
	exit 1
}

for tool in readelf objdump setpriv; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (binutils, util-linux)"
done

# Steps 1 and 2 (Python: parsing the Dockerfile and .dockerignore).
# It prints the path of the binary the final stage copies.
VERSION_ARG=image-check-$(git describe --always 2>/dev/null || echo nogit)
export VERSION_ARG
t0=$(date +%s)
bin=$("$PYTHON3" - "$root" "$work" <<'PY'
import fnmatch, json, os, re, shlex, shutil, subprocess, sys

root, work = sys.argv[1], sys.argv[2]
errors = []

def err(msg):
    errors.append(msg)

def log(msg):
    print("check-image: " + msg, file=sys.stderr)

# --- parse the Dockerfile into (line, instruction, args) -----------------
lines = open(os.path.join(root, "Dockerfile")).read().split("\n")
if not re.match(r"^# *syntax=docker/dockerfile:1(\.\d+)*$", lines[0]):
    err("Dockerfile: first line should be the parser directive '# syntax=docker/dockerfile:1'")
instrs, buf, start = [], "", 0
for i, line in enumerate(lines, 1):
    s = line.strip()
    if not buf and (not s or s.startswith("#")):
        continue
    if buf and s.startswith("#"):
        continue  # comment inside a continued instruction
    if not buf:
        start = i
    if s.endswith("\\"):
        buf += s[:-1].rstrip() + " "
        continue
    buf += s
    word, _, rest = buf.partition(" ")
    instrs.append((start, word.upper(), rest.strip()))
    buf = ""
if buf:
    err("Dockerfile: the last instruction ends with a line continuation")

stages = []  # {"image", "name", "instrs": [...]}
for ln, ins, args in instrs:
    if ins == "FROM":
        m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
        if not m:
            err(f"Dockerfile:{ln}: cannot read FROM {args}")
            continue
        stages.append({"line": ln, "image": m.group(1), "name": m.group(2), "instrs": []})
    elif not stages:
        if ins != "ARG":
            err(f"Dockerfile:{ln}: {ins} before the first FROM")
    else:
        stages[-1]["instrs"].append((ln, ins, args))
if len(stages) < 2:
    err("Dockerfile: want a multi-stage build (a build stage and a runtime stage)")
    stages += [{"line": 0, "image": "", "name": None, "instrs": []}] * (2 - len(stages))
names = [s["name"] for s in stages if s["name"]]
if len(names) != len(set(names)):
    err("Dockerfile: stage names repeat")
build, final = stages[0], stages[-1]

# --- lint ----------------------------------------------------------------
def image_ref(ref):
    """(name, tag, digest)"""
    name, digest = (ref.split("@", 1) + [None])[:2]
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest

for st in stages:
    ref = st["image"]
    if ref in names:
        continue  # FROM an earlier stage
    name, tag, digest = image_ref(ref)
    if not tag and not digest:
        err(f"Dockerfile:{st['line']}: base image {ref} has no tag: pin one (hadolint DL3006)")
    if tag == "latest":
        err(f"Dockerfile:{st['line']}: base image {ref} uses latest (hadolint DL3007)")

gomod = open(os.path.join(root, "go.mod")).read()
m = re.search(r"^go (\d+\.\d+(?:\.\d+)?)\s*$", gomod, re.M)
want_go = m.group(1) if m else None
m = re.search(r"^toolchain go(\S+)\s*$", gomod, re.M)
if m:
    want_go = m.group(1)
bname, btag, _ = image_ref(build["image"])
m = re.match(r"^(\d+\.\d+\.\d+)-(\w+)$", btag or "")
if bname not in ("golang", "docker.io/library/golang") or not m:
    err(f"Dockerfile:{build['line']}: build stage should be golang:X.Y.Z-<debian codename>, got {build['image']}")
else:
    if want_go and m.group(1) != want_go:
        err(f"Dockerfile:{build['line']}: build image Go {m.group(1)} but go.mod asks for Go {want_go}")
    if m.group(2) != "bookworm":
        err(f"Dockerfile:{build['line']}: build image is Debian {m.group(2)}; the runtime stage is Debian 12 (bookworm): "
            "cgo binaries need a runtime glibc at least as new as the build's")
fname, ftag, _ = image_ref(final["image"])
if not (fname.endswith("distroless/base-debian12") or fname.endswith("distroless/base-nossl-debian12")
        or (fname in ("debian", "docker.io/library/debian") and re.match(r"^(12|bookworm)\b", ftag or ""))):
    err(f"Dockerfile:{final['line']}: runtime image {final['image']} is not a Debian 12 image with glibc "
        "(distroless/base-debian12 or debian:12/bookworm); update this check and the glibc limit together")

earlier = []
for st in stages:
    for ln, ins, args in st["instrs"]:
        if ins == "ADD":
            err(f"Dockerfile:{ln}: ADD: use COPY for local files (hadolint DL3020)")
        if ins == "MAINTAINER":
            err(f"Dockerfile:{ln}: MAINTAINER is deprecated (hadolint DL4000)")
        if ins == "WORKDIR" and not args.startswith("/"):
            err(f"Dockerfile:{ln}: WORKDIR {args} is not absolute (hadolint DL3000)")
        if ins == "COPY":
            m = re.search(r"--from=(\S+)", args)
            if m and m.group(1) not in earlier:
                err(f"Dockerfile:{ln}: COPY --from={m.group(1)} names no earlier stage (hadolint DL3022)")
        if ins == "RUN":
            cmd = re.sub(r"^(--\S+\s+)+", "", args)
            if re.search(r"(^|[;&|]\s*)sudo\b", cmd):
                err(f"Dockerfile:{ln}: sudo in RUN (hadolint DL3004)")
            if re.search(r"(^|[;&|]\s*)cd\s", cmd):
                err(f"Dockerfile:{ln}: cd in RUN: use WORKDIR (hadolint DL3003)")
            if re.search(r"\bapt(-get)?\s+(dist-)?upgrade\b", cmd):
                err(f"Dockerfile:{ln}: apt-get upgrade in RUN (hadolint DL3005)")
            if re.search(r"\bapt(-get)?\s+install\b", cmd):
                if "--no-install-recommends" not in cmd:
                    err(f"Dockerfile:{ln}: apt-get install without --no-install-recommends (hadolint DL3015)")
                if not re.search(r"\s-y\b|--yes\b|--assume-yes\b", cmd):
                    err(f"Dockerfile:{ln}: apt-get install without -y (hadolint DL3014)")
                if "apt-get update" not in cmd:
                    err(f"Dockerfile:{ln}: apt-get install without apt-get update in the same RUN (hadolint DL3009)")
                if "rm -rf /var/lib/apt/lists/*" not in cmd:
                    err(f"Dockerfile:{ln}: apt lists not removed in the same RUN (rm -rf /var/lib/apt/lists/*; hadolint DL3009)")
    if st["name"]:
        earlier.append(st["name"])

def exec_form(ln, ins, args):
    try:
        v = json.loads(args)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    except ValueError:
        pass
    err(f"Dockerfile:{ln}: {ins} must be in exec (JSON) form: the runtime image has no shell (hadolint DL3025)")
    return []

fin = {}
for ln, ins, args in final["instrs"]:
    fin.setdefault(ins, []).append((ln, args))
users = fin.get("USER", [])
if not users:
    err("Dockerfile: the final stage sets no USER: it would run as root (hadolint DL3002)")
else:
    ln, user = users[-1]
    uid = user.split(":")[0]
    if not uid.isdigit():
        err(f"Dockerfile:{ln}: USER {user}: use a numeric uid[:gid] so Kubernetes' runAsNonRoot can verify it")
    elif uid == "0":
        err(f"Dockerfile:{ln}: USER {user} is root (hadolint DL3002)")
ep = [exec_form(ln, "ENTRYPOINT", a) for ln, a in fin.get("ENTRYPOINT", [])]
if not ep or ep[-1][-1:] != ["serve"] or not ep[-1][0].endswith("/ddlguard"):
    err("Dockerfile: the final stage's ENTRYPOINT should be [\".../ddlguard\", \"serve\"]")
cmd = [exec_form(ln, "CMD", a) for ln, a in fin.get("CMD", [])]
if not cmd or cmd[-1] != ["--config", "/etc/ddlguard/ddlguard.yaml"]:
    err("Dockerfile: the final stage's CMD should be [\"--config\", \"/etc/ddlguard/ddlguard.yaml\"]")
hc = fin.get("HEALTHCHECK", [])
if not hc:
    err("Dockerfile: the final stage has no HEALTHCHECK")
else:
    ln, args = hc[-1]
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", args)
    v = exec_form(ln, "HEALTHCHECK CMD", m.group(1) if m else args)
    if v[:2] != [ep[-1][0] if ep else "", "healthcheck"]:
        err(f"Dockerfile:{ln}: HEALTHCHECK should run the binary itself: [\"<entrypoint binary>\", \"healthcheck\", ...]")
    for opt in ("--interval=", "--timeout=", "--retries="):
        if opt not in args:
            err(f"Dockerfile:{ln}: HEALTHCHECK without {opt}")
exposed = set()
for ln, args in fin.get("EXPOSE", []):
    exposed.update(p.split("/")[0] for p in args.split())
for port in ("6432", "6433"):
    if port not in exposed:
        err(f"Dockerfile: the final stage does not EXPOSE {port}")
copies = [(ln, a) for ln, a in fin.get("COPY", []) if "--from=" in a]
if not copies:
    err("Dockerfile: the final stage copies nothing from the build stage")

runs = [a for _, i, a in build["instrs"] if i == "RUN"]
if not any(re.search(r"\bscripts/build\.sh\b", r) for r in runs):
    err("Dockerfile: the build stage should build with scripts/build.sh (the flags live there)")
if any(re.search(r"\bgo build\b|-ldflags|-trimpath", r) for r in runs):
    err("Dockerfile: the build stage passes its own go build flags; they belong in scripts/build.sh")
mk = open(os.path.join(root, "Makefile")).read()
m = re.search(r"^build:.*\n((?:\t.*\n)+)", mk, re.M)
if not m or "scripts/build.sh" not in m.group(1):
    err("Makefile: the build target should run scripts/build.sh")
if re.search(r"-ldflags|main\.version|build\b[^\n]*\./cmd/ddlguard\b", mk):
    err("Makefile: builds ddlguard with its own flags (-ldflags, main.version, go build ./cmd/ddlguard): they belong in scripts/build.sh only")

if errors:
    for e in errors:
        print("check-image: FAIL: " + e, file=sys.stderr)
    sys.exit(1)
log(f"Dockerfile lint ok ({len(stages)} stages; build {build['image']}, runtime {final['image']})")

# --- the build context, as .dockerignore filters it ---------------------
patterns = []
di = os.path.join(root, ".dockerignore")
if os.path.exists(di):
    for line in open(di):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        p = os.path.normpath(line[1:] if neg else line).lstrip("/")
        patterns.append((neg, p))

def pat_re(p):
    # Docker's patterns: Go filepath.Match per segment plus "**".
    out, i = "", 0
    while i < len(p):
        if p.startswith("**", i):
            i += 2
            if p.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
        elif p[i] == "*":
            out += "[^/]*"; i += 1
        elif p[i] == "?":
            out += "[^/]"; i += 1
        else:
            out += re.escape(p[i]); i += 1
    return re.compile("^" + out + "$")

compiled = [(neg, pat_re(p)) for neg, p in patterns]

def excluded(rel):
    # A path is excluded when it or a parent directory matches; the last
    # matching pattern wins.
    parts = rel.split("/")
    ex = False
    for neg, rx in compiled:
        for k in range(1, len(parts) + 1):
            if rx.match("/".join(parts[:k])):
                ex = not neg
                break
    return ex

has_negations = any(neg for neg, _ in patterns)
fs = os.path.join(work, "fs")
ctx = os.path.join(work, "context")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(ctx)
nfiles = nbytes = 0
for dirpath, dirnames, filenames in os.walk(root):
    reldir = os.path.relpath(dirpath, root)
    reldir = "" if reldir == "." else reldir
    if os.path.abspath(dirpath) == os.path.abspath(work):
        dirnames[:] = []
        continue
    if not has_negations:
        dirnames[:] = [d for d in dirnames if not excluded(os.path.join(reldir, d))
                       and os.path.abspath(os.path.join(dirpath, d)) != os.path.abspath(work)]
    for f in filenames:
        rel = os.path.join(reldir, f)
        if excluded(rel):
            continue
        src = os.path.join(dirpath, f)
        if os.path.islink(src) or not os.path.isfile(src):
            continue
        dst = os.path.join(ctx, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
        nfiles += 1
        nbytes += os.path.getsize(src)
log(f"build context: {nfiles} files, {nbytes // 1024} KiB after .dockerignore")
for must in ("go.mod", "go.sum", "scripts/build.sh", "cmd/ddlguard/main.go"):
    if not os.path.exists(os.path.join(ctx, must)):
        print(f"check-image: FAIL: .dockerignore leaves {must} out of the build context", file=sys.stderr)
        sys.exit(1)
for mustnot in (".git", ".cache", "bin"):
    if os.path.exists(os.path.join(ctx, mustnot)):
        print(f"check-image: FAIL: .dockerignore lets {mustnot}/ into the build context", file=sys.stderr)
        sys.exit(1)

# --- replay the build stage ---------------------------------------------
def host(path, cwd):
    p = path if path.startswith("/") else os.path.join(cwd, path)
    return os.path.join(fs, os.path.normpath(p).lstrip("/"))

cwd = "/"
env = dict(os.environ)
args_set = {}
for ln, ins, a in build["instrs"]:
    if ins == "WORKDIR":
        cwd = os.path.normpath(os.path.join(cwd, a))
        os.makedirs(host(cwd, "/"), exist_ok=True)
    elif ins == "ARG":
        name, _, default = a.partition("=")
        val = os.environ["VERSION_ARG"] if name == "VERSION" else default
        env[name] = args_set[name] = val
    elif ins == "ENV":
        k, _, v = a.partition("=")
        env[k] = v.strip('"')
    elif ins == "COPY":
        words = [w for w in shlex.split(a) if not w.startswith("--")]
        if "--from=" in a:
            print(f"check-image: FAIL: Dockerfile:{ln}: COPY --from in the build stage is not replayed", file=sys.stderr)
            sys.exit(1)
        *srcs, dst = words
        dsth = host(dst, cwd)
        for s in srcs:
            sh = os.path.join(ctx, os.path.normpath(s))
            if not os.path.exists(sh):
                print(f"check-image: FAIL: Dockerfile:{ln}: COPY {s}: not in the build context", file=sys.stderr)
                sys.exit(1)
            if os.path.isdir(sh):
                shutil.copytree(sh, dsth, dirs_exist_ok=True)
            else:
                os.makedirs(dsth if dst.endswith("/") else os.path.dirname(dsth), exist_ok=True)
                shutil.copy2(sh, dsth if not dst.endswith("/") else os.path.join(dsth, os.path.basename(s)))
    elif ins == "RUN":
        cmd = re.sub(r"^(--\S+\s+)+", "", a)
        log(f"Dockerfile:{ln}: RUN {cmd}")
        r = subprocess.run(["/bin/sh", "-c", cmd], cwd=host(cwd, "/"), env=env, stdout=sys.stderr)
        if r.returncode != 0:
            print(f"check-image: FAIL: Dockerfile:{ln}: RUN exited {r.returncode}", file=sys.stderr)
            sys.exit(1)
    else:
        print(f"check-image: FAIL: Dockerfile:{ln}: {ins} in the build stage is not replayed by this check", file=sys.stderr)
        sys.exit(1)

ln, a = copies[0]
words = [w for w in shlex.split(a) if not w.startswith("--")]
src = host(words[0], "/")
if not os.path.isfile(src):
    print(f"check-image: FAIL: Dockerfile:{ln}: COPY --from: {words[0]} was not built", file=sys.stderr)
    sys.exit(1)
print(src)
PY
)
log "build stage replayed in $(($(date +%s) - t0))s: $bin"

# Step 3: the binary against the runtime image's libc.
MAX_GLIBC=2.36
case "$(uname -m)" in
x86_64) machine='X86-64' interp=/lib64/ld-linux-x86-64.so.2 ;;
aarch64) machine='AArch64' interp=/lib/ld-linux-aarch64.so.1 ;;
*) die "unsupported build machine $(uname -m)" ;;
esac
header=$(readelf -h "$bin")
grep -q 'Class:[[:space:]]*ELF64' <<<"$header" || die "$bin is not a 64-bit ELF"
grep -q "Machine:.*$machine" <<<"$header" || die "$bin is not built for $machine"
got_interp=$(readelf -l "$bin" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
[[ "$got_interp" == "$interp" ]] || die "$bin: program interpreter \"$got_interp\", want $interp (dynamically linked against glibc)"
# Debian's libc6 package provides these (distroless/base has libc6 and
# libssl, but no libstdc++6 or libgcc-s1).
mapfile -t needed < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
((${#needed[@]} > 0)) || die "$bin needs no shared libraries: not the cgo build"
for lib in "${needed[@]}"; do
	case "$lib" in
	libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | libresolv.so.2 | "${interp##*/}") ;;
	*) die "$bin needs $lib, which the runtime image (distroless/base-debian12: glibc only) does not have" ;;
	esac
done
newest=$(objdump -T "$bin" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/GLIBC_//' | sort -V | tail -1)
[[ -n "$newest" ]] || die "$bin references no GLIBC_ symbol versions"
[[ "$(printf '%s\n%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -1)" == "$MAX_GLIBC" ]] ||
	die "$bin needs GLIBC_$newest, newer than the runtime image's glibc $MAX_GLIBC (Debian 12)"
log "ELF ok: $machine, interpreter $got_interp, needs ${needed[*]}, newest symbol version GLIBC_$newest (<= $MAX_GLIBC)"

got_version=$("$bin" version)
[[ "$got_version" == "ddlguard $VERSION_ARG" ]] || die "ddlguard version printed \"$got_version\", want \"ddlguard $VERSION_ARG\" (ARG VERSION -> scripts/build.sh -> main.version)"
log "ddlguard version: $got_version"

# Step 4: run it as the image does: uid/gid 65532, no environment beyond
# what the image sets, config from a file.
# In a temp dir of its own: the checkout may sit where uid 65532 cannot
# reach (e.g. under /root).
smoke=$(mktemp -d "${TMPDIR:-/tmp}/ddlguard-image-check.XXXXXX")
chmod 755 "$smoke"
cp "$bin" "$smoke/ddlguard"
bin=$smoke/ddlguard
read -r p_listen p_admin p_closed < <("$PYTHON3" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
cat >"$smoke/ddlguard.yaml" <<EOF
listen: 127.0.0.1:$p_listen
upstream: 127.0.0.1:$p_closed
admin:
  listen: 127.0.0.1:$p_admin
log:
  format: json
EOF
chmod 644 "$smoke/ddlguard.yaml"
as_image=(setpriv --reuid=65532 --regid=65532 --clear-groups --
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/home/nonroot)
as_image() { "${as_image[@]}" "$@"; }
hc() { as_image "$bin" healthcheck --url "$1" >>"$smoke/healthcheck.log" 2>&1; }

help_out=$(as_image "$bin" healthcheck --help 2>&1) && help_rc=0 || help_rc=$?
[[ "$help_rc" == 0 || "$help_rc" == 2 ]] && grep -q -- '-url' <<<"$help_out" ||
	die "ddlguard healthcheck --help exited $help_rc without documenting --url: $help_out"

# Not through the function: $! must be ddlguard itself (setpriv and env
# exec it), not a subshell.
"${as_image[@]}" "$bin" serve --config "$smoke/ddlguard.yaml" >"$smoke/serve.log" 2>&1 &
serve_pid=$!
cleanup() {
	kill "$serve_pid" 2>/dev/null || true
	rm -rf "$smoke"
}
trap cleanup EXIT
ok=
for _ in $(seq 1 50); do
	if hc "http://127.0.0.1:$p_admin/healthz"; then
		ok=1
		break
	fi
	kill -0 "$serve_pid" 2>/dev/null || break
	sleep 0.2
done
[[ -n "$ok" ]] || die "ddlguard healthcheck on /healthz did not succeed within 10s; serve log: $(cat "$smoke/serve.log")"
if hc "http://127.0.0.1:$p_admin/readyz"; then
	die "ddlguard healthcheck on /readyz exited 0 although the upstream is down"
fi
if hc "http://127.0.0.1:$p_closed/healthz"; then
	die "ddlguard healthcheck exited 0 against a closed port"
fi
# serve installs its signal handler just after the listeners start; give
# it a moment after the client listener logs, so SIGTERM tests the drain
# and not that window.
for _ in $(seq 1 25); do
	grep -q '"msg":"listening"' "$smoke/serve.log" && break
	sleep 0.2
done
sleep 0.3
kill -TERM "$serve_pid"
rc=
for _ in $(seq 1 50); do
	if ! kill -0 "$serve_pid" 2>/dev/null; then
		wait "$serve_pid" && rc=0 || rc=$?
		break
	fi
	sleep 0.2
done
[[ -n "$rc" ]] || {
	kill -KILL "$serve_pid" 2>/dev/null || true
	die "ddlguard serve did not exit within 10s of SIGTERM with no sessions"
}
[[ "$rc" == 0 ]] || die "ddlguard serve exited $rc after SIGTERM; log: $(cat "$smoke/serve.log")"
grep -q '"msg":"shut down"' "$smoke/serve.log" || die "ddlguard serve exited without logging \"shut down\"; log: $(cat "$smoke/serve.log")"
log "smoke ok as uid 65532: healthcheck /healthz 0, /readyz 1 (upstream down), closed port 1; SIGTERM -> exit 0"
log "ok in $(($(date +%s) - t0))s"
