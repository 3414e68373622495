#!/usr/bin/env bash
# Checks that the API reference names every route of the OpenAPI document:
# each path and method must appear in it as "METHOD /path", e.g.
# `POST /v1/uploads/{token}/parts` (with the document's parameter names).
#
#   scripts/check-api-docs.sh OPENAPI_JSON [DOC]     (DOC: docs/api.md)
#
# Exits 1 listing the routes the document lacks.
set -euo pipefail

[ "$#" -ge 1 ] && [ "$#" -le 2 ] || { echo "usage: $0 OPENAPI_JSON [DOC]" >&2; exit 2; }
spec="$1"
doc="${2:-$(cd "$(dirname "$0")/.." && pwd)/docs/api.md}"

python3 - "$spec" "$doc" <<'PY'
import json, re, sys

spec_path, doc_path = sys.argv[1], sys.argv[2]
with open(spec_path) as f:
    paths = json.load(f).get("paths") or {}
with open(doc_path) as f:
    doc = f.read()

methods = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
routes = [(m.upper(), p) for p, item in paths.items() for m in item if m in methods]
if not routes:
    sys.exit(f"error: {spec_path} has no routes")

# "GET /v1/uploads" must not count as found because "GET /v1/uploads/{token}" is.
missing = [
    f"{m} {p}" for m, p in sorted(routes, key=lambda r: (r[1], r[0]))
    if not re.search(re.escape(f"{m} {p}") + r"(?![\w/{}.-])", doc)
]
if missing:
    print(f"error: {doc_path} does not document these routes of {spec_path}:", file=sys.stderr)
    for r in missing:
        print(f"  {r}", file=sys.stderr)
    sys.exit(1)
print(f"{doc_path}: all {len(routes)} routes of {spec_path} are documented")
PY
