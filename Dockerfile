# syntax=docker/dockerfile:1
# Multi-stage build: a full Rust toolchain builds tokenwatch (librdkafka is
# compiled from source by rdkafka-sys); the runtime image carries only the
# binary, the default model, the demo geo databases and the example config.
#
#   docker build -t tokenwatch .
#   docker run --rm -p 9464:9464 tokenwatch demo --listen 0.0.0.0:9464

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake build-essential python3 pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so code changes do not rebuild librdkafka and linfa.
# Cargo refuses a manifest whose bench targets are missing: stub every
# [[bench]] Cargo.toml declares (read from it, so a new bench cannot break
# the image again).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in $(grep -A1 '^\[\[bench\]\]' Cargo.toml | sed -n 's/^name = "\(.*\)"$/\1/p'); do \
      echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked \
 && rm -rf src benches
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tokenwatch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tokenwatch --create-home tokenwatch
WORKDIR /opt/tokenwatch
COPY --from=build /src/target/release/tokenwatch /usr/local/bin/tokenwatch
COPY models models
COPY data/geo data/geo
COPY deploy/config/tokenwatch.toml /etc/tokenwatch/tokenwatch.toml
USER tokenwatch
ENV TOKENWATCH_HTTP__LISTEN=0.0.0.0:9464
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/tokenwatch"]
CMD ["serve", "--config", "/etc/tokenwatch/tokenwatch.toml"]
