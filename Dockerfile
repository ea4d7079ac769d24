# syntax=docker/dockerfile:1
# The arcadia-drift image: the binary on Debian slim (with git for write-back), running as non-root.
#   docker build -t ghcr.io/arcadia-drift/arcadia-drift:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin arcadia-drift \
 && strip target/release/arcadia-drift

# Git write-back runs the git command line, so the image carries git and CA
# certificates (Debian's slim image; distroless has no git). Non-root, uid 65532.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/arcadia-drift /usr/local/bin/arcadia-drift
USER 65532:65532
# git needs a writable HOME and temp folder; the chart mounts an emptyDir at /tmp.
ENV HOME=/tmp
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/arcadia-drift"]
CMD ["run"]
