#!/usr/bin/env bash
# Check that the Prometheus rules, their tests and the Grafana dashboard name
# only metrics ddlguard exports, and only recording rules that exist.
#
#   bash deploy/check-metric-names.sh
#
# deploy/metric-names.txt lists every exported metric as "name type". A
# counter must end in _total; a histogram is referenced only through its
# _bucket, _sum and _count series. The script fails (exit 1) when
#   * a file names a ddlguard_... series that is not in the list (a typo, or
#     a metric that was renamed or never existed);
#   * the dashboard or the rule tests use a ddlguard:...:... recording rule
#     that deploy/prometheus/ddlguard-rules.yml does not define;
#   * an exported metric appears nowhere in the rules or the dashboard (so a
#     new metric comes with a panel or an alert).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

LIST=metric-names.txt
RULES=prometheus/ddlguard-rules.yml
TESTS=prometheus/ddlguard-rules.test.yml
DASHBOARD=grafana/ddlguard-dashboard.json

fail=0
err() {
	printf 'check-metric-names: %s\n' "$*" >&2
	fail=1
}

# allowed: every series name a query may use; exported: the list's names.
declare -A allowed=() exported=()
lineno=0
while IFS= read -r line || [[ -n "$line" ]]; do
	lineno=$((lineno + 1))
	line="${line%%#*}"
	[[ -z "${line//[[:space:]]/}" ]] && continue
	read -r name type extra <<<"$line"
	if [[ -n "${extra:-}" || ! "$name" =~ ^ddlguard_[a-z0-9_]+$ ]]; then
		err "$LIST:$lineno: want \"ddlguard_<name> <type>\", got: $line"
		continue
	fi
	exported[$name]=1
	case "$type" in
	counter)
		[[ "$name" == *_total ]] || err "$LIST:$lineno: counter $name does not end in _total"
		allowed[$name]=1
		;;
	gauge)
		[[ "$name" != *_total ]] || err "$LIST:$lineno: gauge $name ends in _total"
		allowed[$name]=1
		;;
	histogram)
		allowed[${name}_bucket]=1
		allowed[${name}_sum]=1
		allowed[${name}_count]=1
		;;
	*) err "$LIST:$lineno: $name: type \"$type\" is not counter, gauge or histogram" ;;
	esac
done <"$LIST"
((${#exported[@]} > 0)) || err "$LIST: no metrics"

# names FILE: every ddlguard_... series name in FILE, one a line. For the
# dashboard, names in panel descriptions may be a histogram's own name;
# queries (the "expr" fields, checked as "FILE exprs") may not.
names() { grep -oE '\bddlguard_[a-z0-9_]+' "$1" | sort -u || true; }
dashboard_exprs() { jq -r '.. | objects | .expr? // empty' "$DASHBOARD"; }

command -v jq >/dev/null 2>&1 || err "jq not found (make deps installs it)"

declare -A used=()
for f in "$RULES" "$TESTS" "$DASHBOARD" "$DASHBOARD exprs"; do
	if [[ "$f" == *" exprs" ]]; then
		src=(dashboard_exprs)
	elif [[ -f "$f" ]]; then
		src=(names "$f")
	else
		err "$f: missing"
		continue
	fi
	while IFS= read -r n; do
		[[ -n "$n" ]] || continue
		if [[ "$f" == "$DASHBOARD" && -n "${exported[$n]:-}" ]]; then
			continue # prose may name a histogram
		fi
		if [[ -z "${allowed[$n]:-}" ]]; then
			base="${n%_bucket}"
			base="${base%_sum}"
			base="${base%_count}"
			if [[ -n "${exported[$n]:-}" ]]; then
				err "$f: $n is a histogram; use ${n}_bucket, ${n}_sum or ${n}_count"
			elif [[ "$base" != "$n" && -n "${exported[$base]:-}" ]]; then
				err "$f: $n: $base is not a histogram"
			else
				err "$f: $n is not a ddlguard metric (see deploy/$LIST)"
			fi
		fi
		if [[ "$f" != "$TESTS" ]]; then
			for suffix in _bucket _sum _count; do
				if [[ "$n" == *"$suffix" && -n "${exported[${n%"$suffix"}]:-}" ]]; then
					used[${n%"$suffix"}]=1
				fi
			done
			used[$n]=1
		fi
	done < <("${src[@]}" | grep -oE '\bddlguard_[a-z0-9_]+' | sort -u || true)
done

# Recording rules: defined in the rules file, used by the dashboard/tests.
declare -A recorded=()
while IFS= read -r r; do
	recorded[$r]=1
done < <(grep -oE '^[[:space:]]*-?[[:space:]]*record:[[:space:]]*[a-z0-9_:]+' "$RULES" | sed -E 's/.*record:[[:space:]]*//')
((${#recorded[@]} > 0)) || err "$RULES: no recording rules found"
for r in "${!recorded[@]}"; do
	[[ "$r" =~ ^ddlguard:[a-z0-9_]+:[a-z0-9_]+$ ]] ||
		err "$RULES: recording rule $r is not named ddlguard:<metric>:<operation>"
done
for f in "$TESTS" "$DASHBOARD"; do
	[[ -f "$f" ]] || continue
	while IFS= read -r r; do
		if [[ -n "$r" && -z "${recorded[$r]:-}" ]]; then
			err "$f: recording rule $r is not defined in $RULES"
		fi
	done < <(grep -oE '\bddlguard:[a-z0-9_]+:[a-z0-9_]+' "$f" | sort -u || true)
done

for n in "${!exported[@]}"; do
	if [[ -z "${used[$n]:-}" ]]; then
		err "$n (in $LIST) is used by neither $RULES nor $DASHBOARD"
	fi
done

if ((fail)); then
	exit 1
fi
printf 'check-metric-names: OK (%d metrics, %d recording rules; rules, tests and dashboard use only these)\n' \
	"${#exported[@]}" "${#recorded[@]}"
