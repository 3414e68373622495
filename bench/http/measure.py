"""Runs one wrk load and measures the server under it, for bench/http/run.sh.

  measure.py idle --server S --pid PID --out FILE
  measure.py run --server S --route R --pid PID --urls N --out FILE [--pg-admin URL --pg-db DB] -- wrk ARGS…

`run` resets the server's peak RSS (writes 5 to /proc/PID/clear_refs, so VmHWM
is the peak of this run), reads its CPU time (utime + stime of all its threads,
/proc/PID/stat) and that of the Postgres backends serving DB, runs wrk (with
bench/http/wrk.lua), reads them again, and appends one JSON line to FILE:
req/s, p50, p99, URLs/s, server CPU in % of one core over the wall time of the
run, CPU per request, VmRSS after the run and VmHWM. It fails when wrk saw
an answer that was not a 200 with a presigned URL, a socket error, or nothing.
"""

import argparse
import json
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(rest[11]) + int(rest[12])) / TICK


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"measure.py: no {field} for pid {pid}")


def pg_backends(admin, db):
    if not admin:
        return []
    out = subprocess.run(
        ["psql", admin, "-tAc", f"select pid from pg_stat_activity where datname = '{db}'"],
        check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def pg_cpu(pids):
    return {p: c for p in pids if (c := cpu_seconds(p)) is not None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["idle", "run"])
    ap.add_argument("--server", required=True)
    ap.add_argument("--route", default="")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--urls", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pg-admin", default="")
    ap.add_argument("--pg-db", default="")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a, wrk = ap.parse_args(argv[:cut]), argv[cut + 1:]

    if a.mode == "idle":
        rec = {"kind": "idle", "server": a.server, "rss_kib": status_kib(a.pid, "VmRSS")}
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return

    if not wrk:
        raise SystemExit("measure.py run: no wrk command after --")
    try:
        with open(f"/proc/{a.pid}/clear_refs", "w") as f:
            f.write("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    pg0 = pg_cpu(pg_backends(a.pg_admin, a.pg_db))
    cpu0, t0 = cpu_seconds(a.pid), time.monotonic()
    res = subprocess.run(wrk, capture_output=True, text=True)
    cpu1, t1 = cpu_seconds(a.pid), time.monotonic()
    pg1 = pg_cpu(pg_backends(a.pg_admin, a.pg_db))
    sys.stderr.write(res.stdout + res.stderr)
    if cpu1 is None:
        raise SystemExit(f"measure.py: {a.server} (pid {a.pid}) exited during the run")
    if res.returncode != 0:
        raise SystemExit(f"measure.py: wrk failed ({res.returncode})")
    w = {}
    for line in res.stdout.splitlines():
        if line.startswith("BENCH "):
            _, k, v = line.split()
            w[k] = int(v)
    if "requests" not in w:
        raise SystemExit("measure.py: no BENCH lines from wrk (is bench/http/wrk.lua loaded?)")
    bad = []
    if w["requests"] == 0:
        bad.append("no requests completed")
    if w["non200"]:
        bad.append(f"{w['non200']} answers were not 200 (first: {w['first_bad_status']})")
    if w["badbody"]:
        bad.append(f"{w['badbody']} 200 answers had no presigned URL")
    if w["socket_errors"]:
        bad.append(f"{w['socket_errors']} socket errors ({w['timeouts']} timeouts)")
    if bad:
        raise SystemExit(f"measure.py: {a.server} {a.route}: " + "; ".join(bad) + ": run not valid")

    wall = t1 - t0
    rps = w["requests"] / (w["duration_us"] / 1e6)
    cpu = cpu1 - cpu0
    pg = sum(c - pg0.get(p, 0.0) for p, c in pg1.items())
    rec = {
        "kind": "run", "server": a.server, "route": a.route,
        "requests": w["requests"], "rps": rps, "urls_per_s": rps * a.urls,
        "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
        "cpu_pct": 100 * cpu / wall, "cpu_us_per_req": 1e6 * cpu / w["requests"],
        "pg_cpu_pct": 100 * pg / wall if a.pg_admin else None,
        "pg_cpu_us_per_req": 1e6 * pg / w["requests"] if a.pg_admin else None,
        "rss_kib": status_kib(a.pid, "VmRSS"), "hwm_kib": status_kib(a.pid, "VmHWM"),
        "hwm_per_run": hwm_reset, "wall_s": wall,
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{a.server:9} {a.route:7} {rps:9.0f} req/s  p50 {rec['p50_ms']:.2f} ms  p99 "
          f"{rec['p99_ms']:.2f} ms  CPU {rec['cpu_pct']:.0f} %  RSS {rec['rss_kib'] / 1024:.1f} MiB "
          f"(peak {rec['hwm_kib'] / 1024:.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()
