#!/usr/bin/env bash
# Build the ddlguard binary. The one place the build flags live: `make build`
# and the Dockerfile's build stage both run this script.
#
#   scripts/build.sh [OUT]        # default OUT: bin/ddlguard
#
# Environment:
#   VERSION  stamped into `ddlguard version` (main.version); default: `git
#            describe --always --dirty`, or "dev" outside a git checkout
#            (the image build passes it as a build argument, since the
#            Docker build context has no .git)
#   GO       the go command (default: go)
#
# cgo is required (pg_query_go compiles PostgreSQL's parser), so the binary
# links against the build machine's glibc: run it on the same or a newer
# glibc (the image's build and runtime stages are both Debian 12).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${1:-bin/ddlguard}
version=${VERSION:-}
if [[ -z "$version" ]]; then
	version=$(git describe --always --dirty 2>/dev/null || echo dev)
fi
if [[ ! "$version" =~ ^[A-Za-z0-9._+-]+$ ]]; then
	echo "build.sh: VERSION \"$version\" may only hold letters, digits and . _ + -" >&2
	exit 2
fi

export CGO_ENABLED=1
exec "${GO:-go}" build -trimpath -ldflags "-X main.version=${version}" -o "$out" ./cmd/ddlguard
