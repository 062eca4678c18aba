# syntax=docker/dockerfile:1
# The headroom image: the one binary (`headroom run`, `headroom operator run`,
# `headroom forecast`, …) and the shipped model, on distroless, as non-root.
#
#   docker build -t ghcr.io/headroom-aiops/headroom:0.1.0 .
#
# deploy/ runs it as the operator (deploy/operator/deployment.yaml) and as a
# sharded forecast CronJob (deploy/examples/forecast-cronjob.yaml).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target/ are cache mounts: the binary is copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin headroom \
    && install -D -m 0755 target/release/headroom /out/headroom

# glibc and libgcc only (TLS is rustls): no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/headroom /usr/local/bin/headroom
COPY models/default /models/default
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/headroom"]
