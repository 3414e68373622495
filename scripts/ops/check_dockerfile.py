#!/usr/bin/env python3
"""Replays the Dockerfile's build stage without a Docker engine.

Reads the build stage (the stage whose RUN lines call `cargo build`), and in an
empty folder does what Docker would do there, in order:
  - COPY: copies exactly the named paths, as .dockerignore lets them into the
    build context (a path the context lacks fails, as `docker build` would);
  - RUN: shell commands from a short list (mkdir, touch, echo, printf, cp, rm,
    true) run as written; `cargo fetch` becomes `cargo metadata --locked
    --offline`; `cargo build ...` becomes `cargo metadata --locked --offline`
    and then the same `cargo build` on this machine's toolchain, offline, in the
    dev profile and with CARGO_TARGET_DIR set to the repository's target/
    (dependencies already built there are reused; only the broker is compiled).
A missing workspace member, manifest, stub or source file (a `mod`, a
migration the code embeds) fails one of these steps. Anything else in a RUN
line fails the check: teach it here, or keep the build stage that simple.
Last, the runtime stage's `COPY --from=build` must name the path where that
build leaves the binary.

usage: check_dockerfile.py [--dockerfile F] [--context DIR] [--workdir DIR]
                           [--target-dir DIR] [--metadata-only]
Environment: CARGO_FLOCK=FILE wraps each cargo command in `flock FILE`.
"""
import argparse
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

ALLOWED_SHELL = {"mkdir", "touch", "echo", "printf", "cp", "rm", "true"}


def fail(msg):
    print(f"check-dockerfile: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def instructions(text):
    """(keyword, arguments, line number) of each instruction, continuations joined."""
    out, buf, start = [], "", None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction
        if start is None:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        kw, _, rest = buf.strip().partition(" ")
        out.append((kw.upper(), rest.strip(), start))
        buf, start = "", None
    if buf:
        fail("the Dockerfile ends inside a continued line")
    return out


def stages(instrs):
    result, cur = [], None
    for kw, rest, n in instrs:
        if kw == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            cur = {"image": m.group(1), "name": m.group(2), "line": n, "body": []}
            result.append(cur)
        elif cur is not None:
            cur["body"].append((kw, rest, n))
    return result


# ---------------------------------------------------------------- .dockerignore
def ignore_patterns(context):
    path = os.path.join(context, ".dockerignore")
    pats = []
    if not os.path.exists(path):
        return pats
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        if neg:
            line = line[1:].strip()
        line = os.path.normpath(line.strip("/")) if line.strip("/") else "."
        pats.append((neg, pattern_regex(line)))
    return pats


def pattern_regex(pat):
    """Docker's (Go filepath.Match plus **) pattern as a regex on a relative path."""
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**", i):
            i += 2
            if pat.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pat.find("]", i)
            if j < 0:
                out += re.escape(c)
            else:
                out += "[" + pat[i + 1:j].replace("!", "^", 1) + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def excluded(rel, pats):
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for neg, rx in pats:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def context_files(context, src, pats):
    """Files under context/src that enter the build context (relative to context)."""
    base = os.path.normpath(src.lstrip("/"))
    full = os.path.join(context, base)
    if not os.path.exists(full):
        return None
    if os.path.isfile(full):
        return [base] if not excluded(base, pats) else []
    files = []
    for root, dirs, names in os.walk(full):
        relroot = os.path.relpath(root, context)
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        for name in sorted(names):
            rel = os.path.normpath(os.path.join(relroot, name))
            if not excluded(rel, pats):
                files.append(rel)
    return files


# ---------------------------------------------------------------- replay
def split_and(cmd):
    """A shell line split on top-level && (quote-aware)."""
    parts, cur, quote, i = [], "", None, 0
    while i < len(cmd):
        c = cmd[i]
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif cmd.startswith("&&", i):
            parts.append(cur.strip())
            cur, i = "", i + 2
            continue
        elif c in ";|`" or cmd.startswith("$(", i):
            fail(f"RUN uses '{c}': only commands joined by && are replayed ({cmd!r})")
        cur += c
        i += 1
    if quote:
        fail(f"unbalanced quote in RUN {cmd!r}")
    parts.append(cur.strip())
    return [p for p in parts if p]


def host_triple():
    out = subprocess.run(["rustc", "-vV"], stdout=subprocess.PIPE, text=True, check=True).stdout
    return re.search(r"^host: (\S+)", out, re.M).group(1)


def run(cmd, cwd, env, what):
    flock = os.environ.get("CARGO_FLOCK")
    if flock and cmd[0] == "cargo":
        cmd = ["flock", flock] + cmd
    t = time.monotonic()
    print(f"check-dockerfile: {what}: {' '.join(shlex.quote(c) for c in cmd)}", file=sys.stderr)
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    took = time.monotonic() - t
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-6000:])
        fail(f"{what} failed in the replayed build stage ({took:.1f} s)")
    print(f"check-dockerfile:   ok ({took:.1f} s)", file=sys.stderr)
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--dockerfile", default=os.path.join(root, "Dockerfile"))
    ap.add_argument("--context", default=root)
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "upload-broker-docker-stage"))
    ap.add_argument("--target-dir", default=os.path.join(root, "target"))
    ap.add_argument("--metadata-only", action="store_true", help="skip the cargo build (seconds instead of a minute)")
    args = ap.parse_args()

    text = open(args.dockerfile, encoding="utf-8").read()
    all_stages = stages(instructions(text))
    builds = [s for s in all_stages if any(kw == "RUN" and re.search(r"\bcargo\s+build\b", r) for kw, r, _ in s["body"])]
    if len(builds) != 1:
        fail(f"expected one stage that runs `cargo build`, found {len(builds)}")
    stage = builds[0]
    pats = ignore_patterns(args.context)

    # The folder is always the same path, so that cargo's fingerprints for the
    # replayed crate stay in one place in the shared target/ (no pile-up).
    work = os.path.abspath(args.workdir)
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    wd = "/"
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = os.path.abspath(args.target_dir)
    env.pop("RUSTFLAGS", None)
    copied, builds_run = 0, 0

    def host(path):
        p = path if path.startswith("/") else os.path.join(wd, path)
        return os.path.join(work, os.path.normpath(p).lstrip("/"))

    for kw, rest, n in stage["body"]:
        where = f"Dockerfile:{n}"
        if kw == "WORKDIR":
            wd = os.path.normpath(os.path.join(wd, rest))
            os.makedirs(host(wd), exist_ok=True)
        elif kw == "ENV":
            for m in re.finditer(r"(\w+)=(\"[^\"]*\"|\S+)", rest):
                env[m.group(1)] = m.group(2).strip('"')
        elif kw in ("COPY", "ADD"):
            words = shlex.split(rest)
            if any(w.startswith("--from") for w in words):
                continue
            if kw == "ADD":
                fail(f"{where}: ADD in the build stage; use COPY")
            words = [w for w in words if not w.startswith("--")]
            srcs, dest = words[:-1], words[-1]
            for src in srcs:
                if any(ch in src for ch in "*?["):
                    fail(f"{where}: wildcards in COPY are not replayed ({src})")
                files = context_files(args.context, src, pats)
                if not files:
                    fail(f"{where}: COPY {src}: not in the build context "
                         + ("(no such path)" if files is None else "(.dockerignore leaves it out)"))
                full = os.path.join(args.context, os.path.normpath(src))
                for rel in files:
                    if os.path.isdir(full):
                        inner = os.path.relpath(rel, os.path.normpath(src))
                        to = os.path.join(host(dest), inner)
                    elif dest.endswith("/") or len(srcs) > 1:
                        to = os.path.join(host(dest), os.path.basename(rel))
                    else:
                        to = host(dest)
                    os.makedirs(os.path.dirname(to), exist_ok=True)
                    shutil.copy2(os.path.join(args.context, rel), to)
                    copied += 1
        elif kw == "RUN":
            if rest.startswith("["):
                fail(f"{where}: exec-form RUN is not replayed")
            for part in split_and(rest):
                word = shlex.split(part)[0]
                cwd = host(wd)
                if word == "cargo":
                    words = shlex.split(part)
                    sub = words[1] if len(words) > 1 else ""
                    if "--locked" not in words:
                        fail(f"{where}: `{part}` lacks --locked")
                    if sub not in ("fetch", "build"):
                        fail(f"{where}: `cargo {sub}` is not replayed (fetch and build are)")
                    # Offline, cargo has only this platform's crates (Docker's
                    # `cargo fetch` gets every platform's): resolve for this one.
                    run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1",
                         "--filter-platform", host_triple()], cwd, env, f"{where} cargo metadata")
                    if sub == "build":
                        builds_run += 1
                        if args.metadata_only:
                            continue
                        flags = [w for w in words[2:] if w != "--release"]
                        if "--offline" not in flags:
                            flags.append("--offline")
                        run(["cargo", "build"] + flags, cwd, env, f"{where} cargo build (dev profile)")
                elif word in ALLOWED_SHELL:
                    run(["sh", "-ec", part], cwd, env, f"{where} shell")
                else:
                    fail(f"{where}: `{word}` in a RUN line is not replayed (allowed: cargo fetch/build, {', '.join(sorted(ALLOWED_SHELL))})")
    if builds_run == 0:
        fail("the build stage never runs cargo build")
    # The runtime stage copies the binary from where the build put it.
    bins = set(re.findall(r"--bin[ =](\S+)", " ".join(r for kw, r, _ in stage["body"] if kw == "RUN")))
    release = any(kw == "RUN" and "--release" in r for kw, r, _ in stage["body"])
    want = {os.path.join(wd, "target", "release" if release else "debug", b) for b in bins}
    names = {stage["name"], str(all_stages.index(stage))}
    froms = []
    for other in all_stages:
        for kw, rest, n in other["body"]:
            m = re.match(r"--from=(\S+)\s+(\S+)\s+\S+", rest) if kw == "COPY" else None
            if m and m.group(1) in names:
                froms.append((n, m.group(2)))
                if m.group(2) not in want:
                    fail(f"Dockerfile:{n}: COPY --from={m.group(1)} {m.group(2)}: the build stage leaves "
                         f"its binary at {', '.join(sorted(want))}")
    if not froms:
        fail("no later stage copies the binary from the build stage")
    print(f"check-dockerfile: the build stage replays ({copied} files copied into {work}, "
          f"base image {stage['image']})", file=sys.stderr)


if __name__ == "__main__":
    main()
