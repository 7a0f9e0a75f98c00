#!/usr/bin/env bash
# go-test.sh ARGS...: `go test ARGS...`, and when it fails, a summary of the
# failures after its output. A failing e2e test dumps the ddlguard log it
# saw, often thousands of lines, after its own error lines; the summary puts
# those error lines (and the FAIL lines) last, where a log's tail shows them.
set -uo pipefail
GO=${GO:-go}
out=$(mktemp "${TMPDIR:-/tmp}/ddlguard-go-test.XXXXXX")
trap 'rm -f "$out"' EXIT
"$GO" test "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
	echo
	echo "=== go test $* failed (exit $status); its failures again:"
	# A test's own lines (file_test.go:N: ...), FAIL and panic lines; not the
	# JSON log lines a test dumps.
	grep -E '^[[:space:]]*(--- FAIL|FAIL|panic:|[[:alnum:]_]+_test\.go:[0-9]+: )' "$out" \
		| grep -v '^[[:space:]]*[[:alnum:]_]*_test\.go:[0-9]*: *{"time"' \
		| cut -c1-600 | tail -n 60
fi
exit "$status"
