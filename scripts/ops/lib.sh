# Helpers of the operations checks (scripts/check-*.sh). Source after scripts/lib.sh.

# A cached venv with what the checks parse with: PyYAML, the PromQL parser
# (Python bindings of the promql-parser crate) and kubernetes-validate (it ships
# the Kubernetes JSON schemas, so validation needs no network).
OPS_VENV="$CACHE_DIR/ops-venv"
OPS_STAMP="pyyaml==6.0.3 promql-parser==0.11.0 kubernetes-validate==1.37.0"
ensure_ops_venv() {
  if [ -x "$OPS_VENV/bin/python" ] && [ "$(cat "$OPS_VENV/.stamp" 2>/dev/null)" = "$OPS_STAMP" ]; then
    return 0
  fi
  log "Installing $OPS_STAMP into $OPS_VENV (once; cached)"
  rm -rf "$OPS_VENV"
  mkdir -p "$CACHE_DIR"
  python3 -m venv "$OPS_VENV"
  # shellcheck disable=SC2086 # one word per package
  "$OPS_VENV/bin/pip" install -q --disable-pip-version-check $OPS_STAMP
  echo "$OPS_STAMP" > "$OPS_VENV/.stamp"
}

# promtool, from Debian's prometheus package.
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  ensure_debian_package prometheus "promtool (the alert rules' unit tests)"
  command -v promtool >/dev/null 2>&1 || die "Debian's prometheus package is installed but promtool is not on PATH"
}
