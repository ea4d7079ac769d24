# syntax=docker/dockerfile:1
# The arcadia-drift image: a static-enough binary on distroless, running as non-root.
#   docker build -t ghcr.io/arcadia-drift/arcadia-drift:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin arcadia-drift \
 && strip target/release/arcadia-drift

# distroless/cc carries glibc and CA certificates, no shell; "nonroot" is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/arcadia-drift /usr/local/bin/arcadia-drift
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/arcadia-drift"]
CMD ["run"]
