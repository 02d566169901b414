# syntax=docker/dockerfile:1
# gpu-health: the processor as a container image (docker-compose.yml builds it).
#
#   docker build -t gpu-health:local .
#   docker run --rm gpu-health:local            # the embedded demo (fixture -> Parquet)
#   docker run --rm gpu-health:local --help
#
# The schema migrations, the demo pipeline and the bundled fixture are compiled into the
# binary; pipelines/*.toml are also copied to /usr/share/gpu-health/pipelines.

# ---- build --------------------------------------------------------------------------
FROM rust:1-bookworm AS build

# cmake: rdkafka's bundled librdkafka (cmake-build); the curl headers: librdkafka 2.12;
# libssl-dev: TLS to Kafka (librdkafka) and to PostgreSQL.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        cmake libcurl4-openssl-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The registry and target directories are BuildKit caches: a rebuild after a source
# change recompiles only the crate itself.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/gpu-health /out/gpu-health

# ---- runtime ------------------------------------------------------------------------
FROM debian:bookworm-slim

# What the binary links besides glibc: OpenSSL 3 and libcurl (librdkafka), zlib.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libssl3 libcurl4 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gpu-health \
    && useradd --system --uid 10001 --gid gpu-health --home-dir /var/lib/gpu-health \
        --create-home --shell /usr/sbin/nologin gpu-health

COPY --from=build /out/gpu-health /usr/local/bin/gpu-health
COPY pipelines/*.toml /usr/share/gpu-health/pipelines/

# Fail the build, not the first start, when a shared library is missing.
RUN if ldd /usr/local/bin/gpu-health | grep 'not found'; then exit 1; fi \
    && gpu-health --version

USER gpu-health:gpu-health
# Relative output paths (the demo's out/demo) land here.
WORKDIR /var/lib/gpu-health
ENV GPU_HEALTH_LOG=info

# Prometheus metrics; the listen address defaults to 127.0.0.1:9464, so a container
# sets GPU_HEALTH_METRICS__LISTEN=0.0.0.0:9464 to expose it.
EXPOSE 9464
# SIGTERM: store the engine state, leave the consumer group, exit. Give it time
# (docker stop -t 60, compose stop_grace_period).
STOPSIGNAL SIGTERM

ENTRYPOINT ["gpu-health"]
CMD ["run"]
