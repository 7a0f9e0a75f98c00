#!/usr/bin/env bash
# Install a pinned Helm v3 into the project's cache (default .cache/bin/helm)
# and print its path. Idempotent: an installed binary of the pinned version
# is kept. Debian 12 has no helm package and the project's machines reach no
# download site, so Helm is built from source through the Go module proxy
# (`go install`), with the same version stamps as Helm's own release build.
#
#   scripts/install-helm.sh            # prints e.g. /path/to/repo/.cache/bin/helm
#   HELM_BIN_DIR=/usr/local/bin scripts/install-helm.sh
#
# First install from an empty Go module and build cache: about 3 minutes on 2
# cores (downloads about 400 MB of modules, compiles for about 2 CPU-minutes);
# later runs: instant. Needs Go >= 1.26.0 (Helm v3.22's go.mod).
set -euo pipefail

HELM_VERSION=v3.22.0
# Helm's Makefile derives the Kubernetes version `helm template` and
# `helm lint` assume (Capabilities.KubeVersion) from its client-go module:
# client-go v0.37.x -> Kubernetes 1.37.
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bindir=${HELM_BIN_DIR:-$root/.cache/bin}
helm=$bindir/helm

log() { printf 'install-helm: %s\n' "$*" >&2; }

installed_version() {
	[[ -x "$helm" ]] && "$helm" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ "$(installed_version)" == "$HELM_VERSION" ]]; then
	echo "$helm"
	exit 0
fi

command -v "${GO:-go}" >/dev/null 2>&1 || {
	log "go not found: Helm $HELM_VERSION is built with go install"
	exit 1
}
mkdir -p "$bindir"
log "building Helm $HELM_VERSION into $bindir with go install (first time: a few minutes)"
start=$(date +%s)
pkg=helm.sh/helm/v3
ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.metadata="
ldflags+=" -X $pkg/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR -X $pkg/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR"
ldflags+=" -X $pkg/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR -X $pkg/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
if ! GOBIN="$bindir" CGO_ENABLED=0 "${GO:-go}" install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION"; then
	log "go install $pkg/cmd/helm@$HELM_VERSION failed (see above)"
	exit 1
fi
got=$(installed_version)
if [[ "$got" != "$HELM_VERSION" ]]; then
	log "installed helm reports version \"$got\", want $HELM_VERSION"
	exit 1
fi
log "Helm $HELM_VERSION installed in $(($(date +%s) - start))s"
echo "$helm"
