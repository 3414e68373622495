#!/usr/bin/env bash
# docker-compose.yml's broker uses only settings the broker knows (asked from
# the binary: BROKER_BIN serve --help), sets the required ones and those README's
# "With Docker" promises, and the broker accepts their values
# (scripts/ops/check_compose.py). First proves it catches an unknown setting, a
# missing required one and a value the broker refuses.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/ops/lib.sh"
cd "$ROOT"
BROKER_BIN="${BROKER_BIN:-$ROOT/target/debug/upload-broker}"
[ -x "$BROKER_BIN" ] || die "no broker binary at $BROKER_BIN (cargo build --locked --bin upload-broker, or set BROKER_BIN)"
ensure_ops_venv

planted="$(mktemp -d)"
trap 'rm -rf "$planted"' EXIT
sed 's/^      S3_FORCE_PATH_STYLE: "true"$/&\n      S3_PATH_STYLE: "true"/' docker-compose.yml > "$planted/unknown.yml"
grep -v '^      S3_BUCKET: uploads$' docker-compose.yml > "$planted/missing.yml"
sed 's/^      S3_REGION: us-east-1$/&\n      BROKER_SIGN_WINDOW: "many"/' docker-compose.yml > "$planted/refused.yml"
for variant in unknown missing refused; do
  cmp -s docker-compose.yml "$planted/$variant.yml" && die "check-compose: could not plant the '$variant' variant (docker-compose.yml changed shape?)"
  if "$OPS_VENV/bin/python" scripts/ops/check_compose.py "$BROKER_BIN" --compose "$planted/$variant.yml" >/dev/null 2>&1; then
    die "check-compose passed a docker-compose.yml with a planted fault ($variant)"
  fi
done
"$OPS_VENV/bin/python" scripts/ops/check_compose.py "$BROKER_BIN"
