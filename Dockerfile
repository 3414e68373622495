# syntax=docker/dockerfile:1
# Multi-stage build: a Rust toolchain builds the release binary; the runtime
# image is distroless (glibc, CA certificates, no shell) and runs as non-root.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin upload-broker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/upload-broker /usr/local/bin/upload-broker
ENV BROKER_LISTEN=0.0.0.0:8080
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/upload-broker"]
CMD ["serve"]
