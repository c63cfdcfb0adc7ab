# syntax=docker/dockerfile:1.7
#
# One image for every marketpipe program: the five stages, the vendor simulator and the CLI.
# Each container picks its program with `command:` (Compose) or `command:` (Kubernetes), e.g.
#   /usr/local/bin/loader      /usr/local/bin/marketpipe migrate
#
#   docker build -t marketpipe:dev .
#   docker build --build-arg VERSION=$(git describe --always) -t marketpipe:dev .
#
# Nothing secret is baked in: credentials come from the environment or mounted files at run time.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Dependencies first, so a source change does not download modules again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
# -o with a trailing slash writes one executable per main package into /out.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ \
      ./services/requester/cmd/requester \
      ./services/poller/cmd/poller \
      ./services/collector/cmd/collector \
      ./services/transformer/cmd/transformer \
      ./services/loader/cmd/loader \
      ./services/vendorsim/cmd/vendorsim \
      ./cmd/marketpipe

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="marketpipe" \
      org.opencontainers.image.description="Bloomberg Data License pipeline: requester, poller, collector, transformer, loader, vendorsim, marketpipe CLI" \
      org.opencontainers.image.source="https://github.com/marketpipe/marketpipe"
COPY --from=build /out/ /usr/local/bin/
# 65532 is distroless's "nonroot"; numeric so Kubernetes can check runAsNonRoot.
USER 65532:65532
# Health, readiness and Prometheus metrics of every stage (HTTP_ADDR); the simulator uses 8081.
EXPOSE 8080 8081
ENV LOG_FORMAT=json
ENTRYPOINT []
CMD ["/usr/local/bin/marketpipe", "--help"]
