"""Uploads one large file to LocalStack with the Python client and with boto3's
``upload_file`` side by side (same concurrency, same part size), each in a
process of its own: wall time, CPU time (user + system) and peak RSS of that
process. Then the time to resume after a kill -9 at 50 %.

Run through ``scripts/bench.sh python`` (or ``clients/python/bench/run.sh``),
which starts Postgres, LocalStack and the broker. Arguments::

    bench.py BROKER_URL S3_ENDPOINT BUCKET [--size-mib 1024] [--part-mib 16]
             [--concurrency 4] [--rounds 1]

The credential comes from UPLOAD_BROKER_KEY, never from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

MiB = 1024 * 1024


def usage() -> Dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024}


def one(kind: str, args: argparse.Namespace, path: str) -> None:
    """One measured upload in this process; prints a JSON line."""
    part = args.part_mib * MiB
    t0 = time.perf_counter()
    if kind == "boto3":
        import boto3  # type: ignore[import-untyped]
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

        s3 = boto3.client(
            "s3",
            endpoint_url=args.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        cfg = TransferConfig(
            multipart_threshold=part,
            multipart_chunksize=part,
            max_concurrency=args.concurrency,
            use_threads=True,
        )
        key = f"bench/boto3-{os.getpid()}.bin"
        s3.upload_file(path, args.bucket, key, Config=cfg)
    else:
        from upload_broker import UploadBroker

        checksum = None if kind == "client-none" else kind.split("-", 1)[1]
        with UploadBroker(args.broker, os.environ["UPLOAD_BROKER_KEY"]) as b:
            r = b.upload(
                path, checksum=checksum, concurrency=args.concurrency, part_size=part, fingerprint=False
            )
        key = r.key
    wall = time.perf_counter() - t0
    print(json.dumps({"kind": kind, "wall_s": wall, "key": key, **usage()}), flush=True)


def resume_child(args: argparse.Namespace, path: str) -> None:
    """The upload the resume measurement kills and then continues: progress lines,
    with the seconds from the start of this function."""
    from upload_broker import Progress, UploadBroker

    t0 = time.perf_counter()

    def report(p: Progress) -> None:
        print(
            json.dumps({"t": time.perf_counter() - t0, "parts": p.uploaded_parts, "percent": p.percent}),
            flush=True,
        )

    with UploadBroker(args.broker, os.environ["UPLOAD_BROKER_KEY"]) as b:
        r = b.upload(path, concurrency=args.concurrency, part_size=args.part_mib * MiB, on_progress=report)
    print(json.dumps({"done": True, "t": time.perf_counter() - t0, "key": r.key, **usage()}), flush=True)


def spawn(*extra: str, args: argparse.Namespace, path: str) -> "subprocess.Popen[bytes]":
    cmd = [
        sys.executable,
        __file__,
        args.broker,
        args.s3_endpoint,
        args.bucket,
        "--size-mib",
        str(args.size_mib),
        "--part-mib",
        str(args.part_mib),
        "--concurrency",
        str(args.concurrency),
        "--file",
        path,
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE)


def delete(args: argparse.Namespace, key: str) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=args.s3_endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    ).delete_object(Bucket=args.bucket, Key=key)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("broker")
    ap.add_argument("s3_endpoint")
    ap.add_argument("bucket")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--part-mib", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--file")
    ap.add_argument("--one")
    ap.add_argument("--resume-child", action="store_true")
    args = ap.parse_args()
    if args.one:
        return one(args.one, args, args.file)
    if args.resume_child:
        return resume_child(args, args.file)

    tmpdir = tempfile.mkdtemp(prefix="pyclient-bench-")
    path = os.path.join(tmpdir, "bench.bin")
    with open(path, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(MiB))
    print(
        f"# {args.size_mib} MiB, parts of {args.part_mib} MiB, concurrency {args.concurrency}, "
        f"{args.rounds} round(s), each run a fresh process",
        flush=True,
    )
    rows: List[Dict[str, Any]] = []
    kinds = ["client-crc32c", "boto3", "client-none", "client-sha256"]
    for _ in range(args.rounds):
        for kind in kinds:
            p = spawn("--one", kind, args=args, path=path)
            out, _ = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"{kind} failed ({p.returncode})")
            row = json.loads(out.decode().strip().splitlines()[-1])
            rows.append(row)
            delete(args, row["key"])
            print(
                f"{kind:14} wall {row['wall_s']:6.2f} s  cpu {row['cpu_s']:6.2f} s  "
                f"peak RSS {row['peak_rss_mib']:6.1f} MiB  {args.size_mib / row['wall_s']:6.1f} MiB/s",
                flush=True,
            )

    # Resume: kill -9 at 50 %, then a new process finds the upload by its fingerprint.
    first = spawn("--resume-child", args=args, path=path)
    assert first.stdout is not None
    killed_at = None
    for raw in first.stdout:
        m = json.loads(raw)
        if m.get("percent", 0) >= 50:
            killed_at = m["percent"]
            first.send_signal(signal.SIGKILL)
            break
    first.wait()
    time.sleep(0.5)
    t0 = time.perf_counter()
    second = spawn("--resume-child", args=args, path=path)
    assert second.stdout is not None
    lines = [json.loads(raw) for raw in second.stdout]
    second.wait()
    total = time.perf_counter() - t0
    ready = next(m for m in lines if "percent" in m)
    done = lines[-1]
    delete(args, done["key"])
    print(
        f"resume after kill -9 at {killed_at:.1f} %: {ready['percent']:.1f} % already stored, "
        f"found and reconciled {ready['t'] * 1000:.0f} ms after the call (process start to that point "
        f"{total - (done['t'] - ready['t']):.2f} s), rest sent and completed in {done['t'] - ready['t']:.2f} s "
        f"(whole second process {total:.2f} s, peak RSS {done['peak_rss_mib']:.1f} MiB)",
        flush=True,
    )
    os.remove(path)
    os.rmdir(tmpdir)


if __name__ == "__main__":
    main()
