# syntax=docker/dockerfile:1
#
# vitalwatch: one image, every role. The role is the first argument:
#   docker run --rm vitalwatch ingest | persist | rules | alerting | api | migrate ...
# The development-only parts (`run`, `simulate`: embedded MQTT broker, simulator, SMTP sink;
# the `dev` feature) are left out of the image.
#
# Build (BuildKit, for the cache mounts):  docker build -t vitalwatch:dev .
# The build: no default features (no `dev`), Kafka TLS with OpenSSL compiled in (static):
#   cargo build --release --locked -p vitalwatch --no-default-features --features kafka-tls-vendored
#
# Pin the base images by digest for reproducible releases, e.g.
#   docker build --build-arg RUST_IMAGE=rust:1-bookworm@sha256:... --build-arg RUNTIME_IMAGE=...@sha256:...
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------- build
FROM ${RUST_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# librdkafka is compiled from source by rdkafka-sys (./configure && make: bash, make, gcc,
# g++, perl, python3), with OpenSSL compiled from source too (openssl-src: perl, make) for
# Kafka TLS and SASL/SCRAM (feature kafka-tls-vendored); SQLite (rusqlite "bundled") and zlib are compiled with cc.
# Most of it is already in rust:1-bookworm; listed so the build does not depend on that.
# Not version-pinned: bookworm's security updates should apply (pin the base image instead).
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends build-essential perl python3 pkg-config

# Link zlib statically (libz-sys builds its bundled copy): otherwise the binary needs
# libz.so.1, which the distroless runtime image does not promise to carry.
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never

WORKDIR /src
COPY . .

# Registry, git checkouts and target/ are cache mounts: rebuilds only compile what changed.
# The binary is copied out of the cached target/ in the same step, then checked: it may
# only need the C runtime libraries that the runtime image provides.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p vitalwatch --no-default-features --features kafka-tls-vendored \
    && install -D -m 0755 target/release/vitalwatch /out/vitalwatch \
    && ldd /out/vitalwatch \
    && if ldd /out/vitalwatch | grep -vqE 'linux-vdso|ld-linux|lib(c|m|gcc_s|pthread|dl|rt)\.so'; then \
         echo "unexpected shared library dependency (see ldd above)" >&2; exit 1; \
       fi \
    && /out/vitalwatch --version

# ---------------------------------------------------------------------------- runtime
# glibc + libgcc, no shell, no package manager; user 65532 (nonroot).
FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="vitalwatch" \
      org.opencontainers.image.description="Remote patient monitoring pipeline: MQTT ingest, Kafka, TimescaleDB, rules, alerting" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/vitalwatch /usr/local/bin/vitalwatch

# Numeric, so Kubernetes can verify runAsNonRoot.
USER 65532:65532
# Health, readiness, metrics and (alerting) acknowledgment endpoints.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/vitalwatch"]
CMD ["--help"]
