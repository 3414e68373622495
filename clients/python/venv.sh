# Sourced by clients/python/test/run.sh and bench/run.sh (after scripts/lib.sh):
# ensure_pyclient_venv creates $PYCLIENT_VENV with the client's dependencies
# and its test extras (pytest, mypy, boto3), recreated when pyproject.toml or
# the interpreter changes, then installs the client itself from this tree.
PYCLIENT_VENV="$CACHE_DIR/python-client-venv"
ensure_pyclient_venv() {
  local py="$ROOT/clients/python" base stamp
  base="${PYCLIENT_PYTHON:-python3}"
  command -v "$base" >/dev/null 2>&1 || die "$base not found: the Python client needs Python >= 3.9 (set PYCLIENT_PYTHON)"
  stamp="$("$base" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') $(sha256sum "$py/pyproject.toml" | cut -c1-16)"
  if [ ! -x "$PYCLIENT_VENV/bin/python" ] || [ "$(cat "$PYCLIENT_VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "Creating $PYCLIENT_VENV (the client's dependencies, pytest, mypy, boto3; once; cached)"
    rm -rf "$PYCLIENT_VENV"
    mkdir -p "$CACHE_DIR"
    "$base" -m venv "$PYCLIENT_VENV"
    "$PYCLIENT_VENV/bin/pip" install -q --disable-pip-version-check "hatchling>=1.18" "$py[test]"
    echo "$stamp" > "$PYCLIENT_VENV/.stamp"
  fi
  log "clients/python: installing the package (a wheel built with hatchling)"
  "$PYCLIENT_VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall "$py"
  "$PYCLIENT_VENV/bin/python" -c 'import google_crc32c, sys; sys.exit(0 if google_crc32c.implementation == "c" else "google-crc32c has no C extension here")'
}
