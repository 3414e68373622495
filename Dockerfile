# syntax=docker/dockerfile:1
# Multi-stage build: a Rust toolchain builds the release binary; the runtime
# image is distroless (glibc, CA certificates, no shell) and runs as non-root.
#
# The build stage copies the workspace's manifests first and builds the
# dependencies against stub sources, so that a change to the broker's code
# reuses the dependency layers; only a change to a manifest or Cargo.lock
# rebuilds them. Every member of the workspace (Cargo.toml [workspace] members:
# `.` and `client`) must be there for cargo to load the workspace, even though
# only the broker's binary is built: the client's manifest is copied, and its
# targets stay stubs, as do the benches (the broker's binary depends on
# neither, so a change to them never rebuilds the image).
#
# scripts/check-dockerfile.sh replays this stage without Docker (the COPY lines
# filtered by .dockerignore, the stub lines, then cargo metadata and cargo build
# offline): run it after changing the workspace's members, targets or this file.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# 1. Manifests, then stub targets for every target the manifests name.
COPY Cargo.toml Cargo.lock ./
COPY client/Cargo.toml ./client/
RUN mkdir -p src benches client/src/bin \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs client/src/lib.rs \
 && echo 'fn main() {}' > client/src/bin/upb.rs \
 && echo 'fn main() {}' > benches/presign.rs \
 && echo 'fn main() {}' > benches/sweep.rs \
 && echo 'fn main() {}' > benches/grants.rs

# 2. Dependencies: fetched and compiled once per Cargo.lock.
RUN cargo fetch --locked
RUN cargo build --release --locked --offline --bin upload-broker

# 3. The sources. touch: COPY keeps the files' old times, and cargo must see
# that the stubs it compiled above were replaced.
COPY src ./src
COPY migrations ./migrations
RUN touch src/lib.rs src/main.rs \
 && cargo build --release --locked --offline --bin upload-broker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/upload-broker /usr/local/bin/upload-broker
ENV BROKER_LISTEN=0.0.0.0:8080
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/upload-broker"]
CMD ["serve"]
