# syntax=docker/dockerfile:1
#
# longlink container image: a static binary on distroless, running as non-root.
#   docker build -t longlink .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:8081:8081 \
#     -e LONGLINK_TOKEN_SECRET=... -e LONGLINK_API_KEY=... longlink
# See docs/deploy.md.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
# The patched gnet that go.mod replaces (third_party/gnet/PATCHES.md).
COPY third_party ./third_party
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
# CGO off: the binary is static and runs on distroless/static (no libc).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/longlink .
# Smoke-test the binary when it can run here (not when cross-compiling).
RUN if [ "${TARGETARCH}" = "$(go env GOHOSTARCH)" ]; then /out/longlink help >/dev/null; fi

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/longlink /longlink
# 65532 is distroless's "nonroot"; numeric so Kubernetes runAsNonRoot can verify it.
USER 65532:65532
# 8080 WebSocket clients (public), 8081 API + /metrics + /demo/ (keep private),
# 7946 gossip (memberlist uses TCP and UDP), 7947 push forwarding between nodes (TCP).
EXPOSE 8080/tcp 8081/tcp 7946/tcp 7946/udp 7947/tcp
# The binary probes itself: distroless has no shell or curl. It reads the port from
# LONGLINK_API_ADDR, so move the API port with that variable rather than --api-addr.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/longlink", "healthcheck", "--timeout", "3s"]
# SIGTERM starts a graceful drain (close 1001 to every client, wait --drain-timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/longlink", "serve"]
