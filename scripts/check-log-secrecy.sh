#!/usr/bin/env bash
# Fails if the logs of a test run hold a secret: a resume token, a presigned URL
# signature or credential scope, an API key used by the tests (or one made with
# `keys create`), a grant (JWT), a bearer header, an AWS secret key, a webhook
# secret or a webhook signature. Usage: scripts/check-log-secrecy.sh DIR
set -euo pipefail
dir="${1:?usage: check-log-secrecy.sh DIR}"
shopt -s nullglob
files=("$dir"/*.log)
[ "${#files[@]}" -gt 0 ] || { echo "error: no logs in $dir: the tests wrote none (UPLOAD_BROKER_TEST_LOG_DIR?)" >&2; exit 1; }
lines=$(cat "${files[@]}" | wc -l)
[ "$lines" -gt 100 ] || { echo "error: only $lines log lines in $dir; the check would prove nothing" >&2; exit 1; }
grep -q '"route":"/v1/uploads/{token}/complete"' "${files[@]}" || { echo "error: no request logs in $dir" >&2; exit 1; }

found=0
check() {
  local what="$1" pattern="$2"
  if grep -P -n -m 3 "$pattern" "${files[@]}" >/tmp/ub-secret-hits.$$ 2>/dev/null; then
    echo "SECRET IN LOGS ($what):" >&2
    cut -c1-300 /tmp/ub-secret-hits.$$ >&2
    found=1
  fi
  rm -f /tmp/ub-secret-hits.$$
}
# Resume tokens: exactly 66 base64url characters, starting with version 1 ("A" then Q..f).
check "resume token" '(?<![A-Za-z0-9_-])A[Q-Za-f][A-Za-z0-9_-]{64}(?![A-Za-z0-9_-])'
check "presigned URL signature" '(?i)x-amz-signature'
check "presigned URL credential" '(?i)x-amz-credential'
check "API key" 'key-of-tenant-[ab]|cli-secret-api-key'
check "bearer credential" '(?i)bearer [A-Za-z0-9]'
check "AWS secret" '(?i)secret_access_key"\s*:\s*"[^"<*]'
# Grants (JWTs): base64url of a JSON header, a payload and a signature.
check "grant (JWT)" 'eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*'
# API keys kept in Postgres, and the tests' metrics token and browser key.
check "API key (ubk_)" 'ubk_[A-Za-z0-9_-]{20,}'
# Webhook secrets and the signatures made with them.
check "webhook secret" 'whsec_[A-Za-z0-9+/]{20,}'
check "webhook signature" 'v1,[A-Za-z0-9+/]{43}='
check "test secret" 'metrics-token-0123456789|e2e-browser-key'
if [ "$found" -ne 0 ]; then exit 1; fi
echo "log secrecy: $lines lines in ${#files[@]} files, no resume token, URL signature, API key or secret"
