# syntax=docker/dockerfile:1
# Build: the same `make build` (and so the same flags) as a developer's build.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION} && ./bin/ddlguard version

# Run: a slim Debian with the same libc the build used, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ddlguard
COPY --from=build /src/bin/ddlguard /usr/local/bin/ddlguard
USER 10001:10001
EXPOSE 6432
ENTRYPOINT ["/usr/local/bin/ddlguard", "serve"]
# Address and upstream come from flags, DDLGUARD_* variables or a mounted
# config file, e.g. --config /etc/ddlguard/ddlguard.yaml.
CMD ["--listen", "0.0.0.0:6432"]
