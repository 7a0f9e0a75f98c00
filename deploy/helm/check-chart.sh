#!/usr/bin/env bash
# Check the Helm chart (`make check-helm`). Fails on the first failing step.
#
#   deploy/helm/check-chart.sh DDLGUARD_BINARY
#
# HELM (default: scripts/install-helm.sh's pinned Helm in .cache/bin) and
# PYTHON3 (default /usr/bin/python3, with python3-yaml) can be overridden;
# SCHEMACHECK (deploy/kubernetes/schemacheck, built by `make schemacheck`)
# is required.
#
#  1. files/ddlguard-rules.yml equals deploy/prometheus/ddlguard-rules.yml.
#  2. helm lint --strict, with the default values and ci/full-values.yaml.
#  Every rendering is first decoded strictly into the Kubernetes API's Go
#  types by SCHEMACHECK (unknown fields, wrong types; ServiceMonitor and
#  PrometheusRule are only checked by check-manifests.py).
#  3. helm template with the default values (plus the required upstream),
#     checked by deploy/kubernetes/check-manifests.py: no TLS, no secret env,
#     PDB, no ServiceMonitor/PrometheusRule, ddlguard check-config accepts
#     the rendered ddlguard.yaml.
#  4. helm template with ci/full-values.yaml at Kubernetes 1.30 (the oldest
#     the chart supports): TLS mounted and configured, monitor DSN and admin
#     token from secretKeyRefs, upstream CA mounted, config overrides merged,
#     grace period from the shutdown values, ServiceMonitor, PrometheusRule
#     equal to the rules file with all its alerts; check-config accepts it.
#  5. helm template with the PDB off renders no PDB.
#  6. Bad values fail with a message naming the value: no upstream,
#     tls.enabled without a Secret, config.shutdown, config.admin.token,
#     image tag latest; Kubernetes 1.29 is refused.
#  7. README.md's values table lists every value in values.yaml.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
ddlguard=${1:?usage: check-chart.sh DDLGUARD_BINARY}
chart=deploy/helm/ddlguard
rules=deploy/prometheus/ddlguard-rules.yml
PYTHON3=${PYTHON3:-/usr/bin/python3}
SCHEMACHECK=${SCHEMACHECK:?set SCHEMACHECK to the binary of deploy/kubernetes/schemacheck (make schemacheck)}
# check FLAGS... FILE: schema decoding, then check-manifests.py.
check() {
	"$SCHEMACHECK" "${@: -1}" 2> >(grep -v 'no types here, not checked' >&2) || return 1
	"$PYTHON3" deploy/kubernetes/check-manifests.py --ddlguard "$ddlguard" "$@"
}
HELM=${HELM:-$(bash scripts/install-helm.sh)}
out=$root/.cache/helm-check
rm -rf "$out"
mkdir -p "$out"

log() { printf 'check-helm: %s\n' "$*" >&2; }
die() {
	printf 'check-helm: FAIL: %s\n' "$*" >&2
	exit 1
}
t0=$(date +%s)

# 1
cmp -s "$rules" "$chart/files/ddlguard-rules.yml" ||
	die "$chart/files/ddlguard-rules.yml differs from $rules: cp $rules $chart/files/"

# 2
upstream=(--set upstream=postgres.example.internal:5432)
"$HELM" lint --strict "$chart" "${upstream[@]}" >"$out/lint-default.txt" 2>&1 ||
	die "helm lint (default values): $(cat "$out/lint-default.txt")"
"$HELM" lint --strict "$chart" -f "$chart/ci/full-values.yaml" >"$out/lint-full.txt" 2>&1 ||
	die "helm lint (ci/full-values.yaml): $(cat "$out/lint-full.txt")"
log "helm lint --strict ok (default and full values)"

# 3
"$HELM" template ddlguard "$chart" "${upstream[@]}" >"$out/default.yaml" ||
	die "helm template (default values) failed"
check "$out/default.yaml" || die "default rendering ($out/default.yaml)"
log "default values: rendering checked"

# 4
"$HELM" template ddlguard "$chart" -f "$chart/ci/full-values.yaml" --kube-version 1.30.0 >"$out/full.yaml" ||
	die "helm template (ci/full-values.yaml) failed"
check --replicas 3 --tls --monitor-secret --admin-token-secret --service-monitor --rules "$rules" \
	--expect-config guard.lock_timeout=1s --expect-config log.level=debug --expect-config log.format=json \
	--expect-config execution.retry_budget=20s --expect-config client_tls.require=True \
	--expect-config upstream_tls.mode=verify-full --expect-config upstream_tls.ca_file=/etc/ddlguard/upstream-ca/ca.crt \
	--expect-config shutdown.drain_timeout=60s --expect-config shutdown.delay=2s \
	"$out/full.yaml" || die "full rendering ($out/full.yaml)"
grep -q 'terminationGracePeriodSeconds: 77$' "$out/full.yaml" ||
	die "full rendering: terminationGracePeriodSeconds is not 5 + 2 + 60 + 10 = 77"
grep -q 'image: registry.example.com/platform/ddlguard:1.2.3$' "$out/full.yaml" ||
	die "full rendering: image is not repository:tag from the values"
log "full values: rendering checked (TLS, secrets, ServiceMonitor, PrometheusRule, overrides)"

# 5
"$HELM" template ddlguard "$chart" "${upstream[@]}" --set podDisruptionBudget.enabled=false >"$out/nopdb.yaml"
check --no-pdb "$out/nopdb.yaml" || die "rendering with podDisruptionBudget.enabled=false"

# 6
must_fail() {
	local want=$1
	shift
	local got
	if got=$("$HELM" template ddlguard "$chart" "$@" 2>&1); then
		die "helm template $* succeeded; want an error about $want"
	fi
	grep -qF -- "$want" <<<"$got" || die "helm template $*: error does not mention \"$want\": $got"
}
must_fail "upstream is required"
must_fail "tls.enabled needs tls.existingSecret" "${upstream[@]}" --set tls.enabled=true
must_fail "config.shutdown is set by the chart" "${upstream[@]}" --set config.shutdown.delay=1s
must_fail "use admin.existingSecret" "${upstream[@]}" --set config.admin.token=0123456789abcdef
must_fail "not latest" "${upstream[@]}" --set image.tag=latest
must_fail "kubeVersion" "${upstream[@]}" --kube-version 1.29.0
log "bad values refused with a message"

# 7
"$PYTHON3" - "$chart/values.yaml" "$chart/README.md" <<'PY'
import re, sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
readme = open(sys.argv[2]).read()
documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
# Leaves: scalars, lists, empty maps; maps documented as a whole
# (resources, probes, security contexts) count for their children.
missing = []
def walk(prefix, node):
    if prefix in documented:
        return
    if isinstance(node, dict) and node:
        for k, v in node.items():
            walk(f"{prefix}.{k}" if prefix else k, v)
    else:
        missing.append(prefix)
walk("", values)
def exists(path):
    node = values
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return True
stale = sorted(d for d in documented if not exists(d))
if missing or stale:
    if missing:
        print(f"check-helm: FAIL: {sys.argv[2]}: values not in the table: {', '.join(missing)}", file=sys.stderr)
    if stale:
        print(f"check-helm: FAIL: {sys.argv[2]}: the table lists values that do not exist: {', '.join(stale)}", file=sys.stderr)
    sys.exit(1)
PY
log "README.md documents every value"
log "ok in $(($(date +%s) - t0))s"
