"""Prints the Markdown table of bench/http/run.sh from measure.py's JSON lines.

  table.py RESULTS.jsonl "Companion 6.2.2" "upload-broker"

Each cell is the mean of the route's runs on that server (req/s also shows
each run); peak RSS is the largest VmHWM of the runs. The last column is
broker ÷ Companion.
"""

import json
import sys
from statistics import mean

path, c_name, b_name = sys.argv[1:4]
runs, idle = [], {}
with open(path) as f:
    for line in f:
        r = json.loads(line)
        if r["kind"] == "idle":
            idle[r["server"]] = r["rss_kib"]
        else:
            runs.append(r)

ROUTES = [
    ("one", "sign one part: `GET /s3/multipart/{uploadId}/{n}?key=`", 1),
    ("batch", "sign 100 parts: `GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,…,100`", 100),
    ("native", "broker only: `POST /v1/uploads/{token}/parts` with 100 numbers", 100),
]


def of(server, route):
    return [r for r in runs if r["server"] == server and r["route"] == route]


def num(x, digits=None):
    if digits is None:
        digits = 1 if abs(x) < 100 else 0
    return f"{x:,.{digits}f}"


def ratio(b, c):
    if b is None or c is None or c == 0:
        return "—"
    r = b / c
    if r >= 100:
        return f"{r:,.0f}×"
    return f"{r:.1f}×" if r >= 10 else f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def row(label, c, b, fmt, rat=True):
    cs = fmt(c) if c is not None else "—"
    bs = fmt(b) if b is not None else "—"
    cv = c if isinstance(c, (int, float)) else None
    bv = b if isinstance(b, (int, float)) else None
    return f"| {label} | {cs} | {bs} | {ratio(bv, cv) if rat else '—'} |"


def stat(rs, key, how=mean):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return how(vals) if vals else None


def rps_cell(rs):
    if not rs:
        return None
    each = " / ".join(num(r["rps"]) for r in rs)
    return f"**{num(mean(r['rps'] for r in rs))}** ({each})"


out = [f"| route, measure | {c_name} | {b_name} | {b_name} ÷ Companion |",
       "| --- | ---: | ---: | ---: |"]
mib = lambda k: f"{k / 1024:.1f} MiB"
ms = lambda x: f"{x / 1000:.2f} s" if x >= 1000 else f"{x:.0f} ms" if x >= 100 else f"{x:.2f} ms"
if idle:
    out.append(row("RSS idle, before any load", idle.get("companion"), idle.get("broker"), mib))
for route, title, urls in ROUTES:
    c, b = of("companion", route), of("broker", route)
    if not c and not b:
        continue
    out.append(f"| **{title}** | | | |")
    line = f"| req/s (each run) | {rps_cell(c) or '—'} | {rps_cell(b) or '—'} | "
    out.append(line + ratio(stat(b, "rps"), stat(c, "rps")) + " |")
    if urls > 1:
        out.append(row("URLs/s", stat(c, "urls_per_s"), stat(b, "urls_per_s"), num))
    out.append(row("latency p50", stat(c, "p50_ms"), stat(b, "p50_ms"), ms))
    out.append(row("latency p99", stat(c, "p99_ms"), stat(b, "p99_ms"), ms))
    out.append(row("server CPU (% of one core)", stat(c, "cpu_pct"), stat(b, "cpu_pct"),
                   lambda x: f"{x:.0f} %"))
    out.append(row("server CPU per request", stat(c, "cpu_us_per_req"), stat(b, "cpu_us_per_req"),
                   lambda x: f"{x:,.0f} µs"))
    pg, pgr = stat(b, "pg_cpu_pct"), stat(b, "pg_cpu_us_per_req")
    if pg is not None:
        per = f" ({pgr:,.0f} µs)" if pgr is not None else ""
        out.append(f"| Postgres CPU for the broker's connections (per request) | — | {pg:.0f} %{per} | — |")
    out.append(row("RSS after the run", stat(c, "rss_kib"), stat(b, "rss_kib"), mib))
    out.append(row("RSS peak during the runs (VmHWM)", stat(c, "hwm_kib", max),
                   stat(b, "hwm_kib", max), mib))
print("\n".join(out))
