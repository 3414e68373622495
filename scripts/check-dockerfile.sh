#!/usr/bin/env bash
# The Docker image would build: replays the Dockerfile's build stage without a
# Docker engine (scripts/ops/check_dockerfile.py: the COPY lines through
# .dockerignore into an empty folder, the stub lines, cargo metadata, then the
# stage's cargo build offline in the dev profile with target/ shared, so only
# the broker itself is compiled). First proves that it catches the bug it was
# written for: a build stage without the workspace member client's manifest.
# CARGO_FLOCK=FILE wraps each cargo command in `flock FILE`.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

broken="$(mktemp)"
trap 'rm -f "$broken"' EXIT
grep -v '^COPY client/Cargo.toml' Dockerfile > "$broken"
if python3 scripts/ops/check_dockerfile.py --dockerfile "$broken" --metadata-only >/dev/null 2>&1; then
  die "check-dockerfile passed a build stage that does not copy client/Cargo.toml"
fi
python3 scripts/ops/check_dockerfile.py "$@"
