# The Tidemark image: one `tidemark` binary, run as an unprivileged user.
#
# Not built in this repository's CI (its machines have no container engine);
# tests/helm_chart.rs checks that it matches the chart (uid, entrypoint).
# Build: docker build -t tidemark:0.1.0 .

# --- build -------------------------------------------------------------------
# The -dev packages are the ones scripts/deps installs: rdkafka's bundled
# librdkafka is built with TLS (OpenSSL), SASL (Cyrus, for GSSAPI) and zlib.
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential pkg-config libssl-dev libsasl2-dev zlib1g-dev python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tidemark \
    && install -D -m 0755 target/release/tidemark /out/tidemark

# --- runtime -----------------------------------------------------------------
# Only the shared libraries the binary links (OpenSSL 3, Cyrus SASL) and CA
# certificates for Kafka TLS and object stores.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 libsasl2-2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tidemark \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tidemark
COPY --from=build /out/tidemark /usr/local/bin/tidemark
# The chart runs it with a read-only root filesystem; nothing here writes to it.
USER 10001:10001
EXPOSE 8080 9101 9102 9103
ENTRYPOINT ["tidemark"]
CMD ["--help"]
