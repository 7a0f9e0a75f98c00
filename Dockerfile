# syntax=docker/dockerfile:1
#
# ddlguard container image.
#
#   docker build --build-arg VERSION="$(git describe --always --dirty)" -t ddlguard:TAG .
#   docker run -v "$PWD/ddlguard.yaml:/etc/ddlguard/ddlguard.yaml:ro" -p 6432:6432 ddlguard:TAG
#
# No Docker engine runs in this project's CI: `make check-image`
# (scripts/check-image-build.sh) runs this file's build-stage commands on a
# copy of the build context, checks the binary against the runtime image's
# glibc and lints this file. Keep the build stage to COPY/RUN/ARG/WORKDIR so
# that check can replay it.

# Build stage: Go as go.mod asks (check-image fails when they differ), on
# Debian 12 "bookworm" (glibc 2.36), the same Debian as the runtime stage:
# cgo links the binary against the build stage's glibc, so the runtime's
# glibc must be the same or newer.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The context has no .git (.dockerignore), so the version comes in here.
ARG VERSION=dev
# scripts/build.sh holds the build flags `make build` uses too (cgo,
# -trimpath, the version stamp).
RUN --mount=type=cache,target=/root/.cache/go-build \
	VERSION="${VERSION}" bash scripts/build.sh bin/ddlguard && ./bin/ddlguard version

# Runtime stage: distroless "base" for Debian 12. Why this and not
# debian:12-slim: it has what a cgo binary needs (glibc 2.36 from Debian 12,
# the same as the build stage, plus CA certificates and tzdata), a non-root
# user (65532 "nonroot") and nothing else: no shell, no package manager, so
# nothing to patch but glibc and no apt layer. Nothing here needs a shell:
# the HEALTHCHECK runs the binary itself, and the Kubernetes manifests use
# the native preStop sleep action. (distroless/static would not do: it has
# no libc.) For reproducible builds pin the digest too:
# gcr.io/distroless/base-debian12:nonroot@sha256:...
FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /src/bin/ddlguard /usr/local/bin/ddlguard
USER 65532:65532
# 6432: PostgreSQL clients; 6433: admin HTTP (/metrics, /healthz, /readyz,
# /locks). The mounted config must set listen 0.0.0.0:6432 and
# admin.listen 0.0.0.0:6433 (both default to loopback).
EXPOSE 6432 6433
# `ddlguard healthcheck` GETs the URL and exits 0 on a 2xx answer, 1
# otherwise. It asks /healthz (the process serves), not /readyz: /readyz
# also fails while the database is unreachable or ddlguard drains, which is
# not a reason to call the container unhealthy (and have it replaced). If
# admin.listen is another port, or the admin listener serves TLS, override
# this in exec form (compose: test: ["CMD", "/usr/local/bin/ddlguard",
# "healthcheck", "--url", ...]): the image has no shell, so shell-form
# health commands (docker run --health-cmd) cannot run.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
	CMD ["/usr/local/bin/ddlguard", "healthcheck", "--url", "http://127.0.0.1:6433/healthz"]
ENTRYPOINT ["/usr/local/bin/ddlguard", "serve"]
# The configuration comes from a mounted file; DDLGUARD_* variables
# override any of its settings (e.g. DDLGUARD_UPSTREAM, DDLGUARD_MONITOR_DSN,
# DDLGUARD_ADMIN_TOKEN).
CMD ["--config", "/etc/ddlguard/ddlguard.yaml"]
