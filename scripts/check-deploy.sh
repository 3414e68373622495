#!/usr/bin/env bash
# The operations kit in deploy/ holds: the Prometheus rules pass promtool's
# checks and unit tests; the Kubernetes manifests validate offline and hold
# together; and every metric and label the Grafana dashboard and the rules use
# is one the broker really exports, read from its /metrics after a real
# workload against Postgres and S3 (LocalStack). Each check first proves that it
# catches a planted fault. Installs what it needs: Debian's prometheus package
# (promtool) and a cached venv (PyYAML, promql-parser, kubernetes-validate).
# Environment: BROKER_BIN (default target/debug/upload-broker), DATABASE_URL
# (its server; the database used is upload_broker_ops), S3_ENDPOINT (a running
# LocalStack; else one is started and stopped here).
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/ops/lib.sh"
cd "$ROOT"
BROKER_BIN="${BROKER_BIN:-$ROOT/target/debug/upload-broker}"
[ -x "$BROKER_BIN" ] || die "no broker binary at $BROKER_BIN (cargo build --locked --bin upload-broker, or set BROKER_BIN)"
ensure_ops_venv
ensure_promtool
PY="$OPS_VENV/bin/python"
scratch="$(mktemp -d)"
own_ls=""
cleanup_deploy() { [ -z "$own_ls" ] || stop_localstack; rm -rf "$scratch"; }
trap cleanup_deploy EXIT

log "Prometheus rules: promtool check rules, then the unit tests (deploy/prometheus/alerts.test.yml)"
cp deploy/prometheus/alerts.yml deploy/prometheus/alerts.test.yml "$scratch/"
sed -i 's/> 0\.05$/> 0.5/' "$scratch/alerts.yml"
if (cd "$scratch" && promtool test rules alerts.test.yml >/dev/null 2>&1); then
  die "the alert unit tests passed rules whose 5xx and storage thresholds were raised tenfold"
fi
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts.test.yml)

log "Kubernetes manifests (deploy/kubernetes): strict schema validation offline, cross-references, settings"
mkdir "$scratch/k8s"
cp deploy/kubernetes/*.yaml "$scratch/k8s/"
sed -i 's/^\( *\)readinessProbe:/\1readinesProbe:/' "$scratch/k8s/deployment.yaml"
if "$PY" scripts/ops/check_kubernetes.py "$BROKER_BIN" "$scratch/k8s" >/dev/null 2>&1; then
  die "check_kubernetes passed a Deployment with a misspelt field (readinesProbe)"
fi
"$PY" scripts/ops/check_kubernetes.py "$BROKER_BIN"

log "Dashboard and alerts against the broker's /metrics after a real workload"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker}"
ensure_postgres
ops_db="${DATABASE_URL%/*}/upload_broker_ops"
psql "${DATABASE_URL%/*}/postgres" -qc 'drop database if exists upload_broker_ops' >/dev/null
DATABASE_URL="$ops_db" ensure_database
if [ -z "${S3_ENDPOINT:-}" ]; then
  own_ls=1
  mkdir -p "$scratch/localstack"
  start_localstack "$(free_port)" "$scratch/localstack"
fi
ensure_localstack_venv
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
S3_BUCKET=upload-broker-ops BROKER_CORS_ORIGINS="*" AWS_ENDPOINT_URL="$S3_ENDPOINT" \
  "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2
if ! DATABASE_URL="$ops_db" S3_BUCKET=upload-broker-ops \
    "$LS_VENV/bin/python" scripts/ops/workload.py "$BROKER_BIN" "$scratch/metrics.txt"; then
  tail -n 30 "$scratch/metrics.txt.broker.log" >&2 || true
  die "the workload failed (the end of the broker's log is above)"
fi
sed 's/upload_broker_part_urls_signed_total/upload_broker_part_urls_issued_total/' \
  deploy/grafana/upload-broker.json > "$scratch/planted.json"
if "$PY" scripts/ops/check_metrics_use.py "$scratch/metrics.txt" "$scratch/planted.json" \
    --rules deploy/prometheus/alerts.yml >/dev/null 2>&1; then
  die "check_metrics_use passed a dashboard using a metric the broker does not export"
fi
"$PY" scripts/ops/check_metrics_use.py "$scratch/metrics.txt" deploy/grafana/*.json --rules deploy/prometheus/alerts.yml

log "docs/operations.md lists every panel of the dashboard"
"$PY" - deploy/grafana/upload-broker.json docs/operations.md <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
doc = open(sys.argv[2], encoding="utf-8").read()
titles = [p["title"] for p in d["panels"] if p["type"] != "row"]
missing = [t for t in titles if f"| {t} |" not in doc]
if missing:
    sys.exit(f"docs/operations.md's panel table lacks: {', '.join(missing)}")
print(f"docs/operations.md lists the dashboard's {len(titles)} panels", file=sys.stderr)
PY
