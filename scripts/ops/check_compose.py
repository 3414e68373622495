#!/usr/bin/env python3
"""docker-compose.yml's broker uses only settings the broker knows, has the ones
it needs, and the broker accepts their values.

The settings come from the broker binary itself (`serve --help` prints each
option's environment variable), plus the few variables read outside its
options (listed below with where they are read). The image's own ENV lines
(the Dockerfile's last stage) count as set. Then the binary runs `serve` with
exactly that environment: a value it refuses (exit 2, one line naming the
variable) fails the check; still running after a few seconds (waiting for the
database `postgres`, which does not resolve here) means every value passed.

usage: check_compose.py BROKER_BIN [--compose F] [--dockerfile F] [--service broker]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

# Read by the broker but not options of `serve` (so not in --help).
OUTSIDE_OPTIONS = {
    # The AWS SDK's standard credential chain (storage::Storage::connect).
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
    # Logging (src/telemetry.rs; RUST_LOG through tracing-subscriber's EnvFilter).
    "RUST_LOG", "LOG_FORMAT", "NO_COLOR",
    # Where the token secret file goes by default (src/secret_file.rs).
    "STATE_DIRECTORY", "XDG_STATE_HOME", "HOME",
}

# What README's "With Docker" promises on top of what the broker requires.
COMPOSE_NEEDS = {
    "BROKER_LISTEN": lambda v: v.startswith("0.0.0.0:") or v.startswith("[::]:"),
    "BROKER_API_KEYS": lambda v: any(p.split(":", 1)[-1] == "dev-key" for p in v.split(",")),
    "BROKER_TOKEN_SECRET": lambda v: len(v) >= 32,
    "S3_ENDPOINT": lambda v: bool(v),
    "S3_FORCE_PATH_STYLE": lambda v: v == "true",
    "AWS_ACCESS_KEY_ID": lambda v: bool(v),
    "AWS_SECRET_ACCESS_KEY": lambda v: bool(v),
}


def fail(msg):
    print(f"check-compose: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def broker_settings(binary):
    help_text = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, text=True, check=True).stdout
    known = set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text))
    # An option whose description says "(required)".
    required = set()
    for block in re.split(r"\n(?=\s*--)", help_text):
        if "(required)" in block:
            m = re.search(r"\[env: ([A-Z0-9_]+)", block)
            if m:
                required.add(m.group(1))
    if len(known) < 10 or not required:
        fail(f"could not read the settings from `{binary} serve --help`")
    return known, required


def broker_refuses(binary, settings, seconds=3):
    """The broker's own verdict on settings: runs `serve` with exactly them (and
    a listen address of its own) and returns its one-line complaint if it exits
    2 (bad configuration); None if it is still running after `seconds` (waiting
    for a database that does not answer here) or stopped for another reason."""
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    run_env.update(settings)
    run_env["BROKER_LISTEN"] = "127.0.0.1:0"
    if "METRICS_LISTEN" in run_env:
        run_env["METRICS_LISTEN"] = "127.0.0.1:0"
    with tempfile.TemporaryDirectory() as home:
        run_env["HOME"] = home
        p = subprocess.Popen([binary, "serve"], env=run_env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            return None
        out = p.stdout.read().strip()
        if p.returncode == 2:
            return out.splitlines()[-1] if out else "(exit 2, no output)"
        return None


def image_env(dockerfile):
    env, last = {}, None
    for line in open(dockerfile, encoding="utf-8"):
        s = line.strip()
        if re.match(r"FROM\s", s, re.I):
            env = {}
        elif re.match(r"ENV\s", s, re.I):
            for m in re.finditer(r"(\w+)=(\"[^\"]*\"|\S+)", s[3:]):
                env[m.group(1)] = m.group(2).strip('"')
    return env


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("broker_bin")
    ap.add_argument("--compose", default=os.path.join(root, "docker-compose.yml"))
    ap.add_argument("--dockerfile", default=os.path.join(root, "Dockerfile"))
    ap.add_argument("--service", default="broker")
    args = ap.parse_args()

    known, required = broker_settings(args.broker_bin)
    doc = yaml.safe_load(open(args.compose, encoding="utf-8"))
    svc = (doc.get("services") or {}).get(args.service)
    if not svc:
        fail(f"{args.compose} has no service {args.service}")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    env = {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}
    if svc.get("env_file"):
        fail("the broker service uses env_file: list its settings under environment, where this check sees them")

    unknown = sorted(k for k in env if k not in known and k not in OUTSIDE_OPTIONS)
    if unknown:
        fail(f"the broker does not know {', '.join(unknown)} (docker-compose.yml, service {args.service}); "
             f"`upload-broker serve --help` lists what it knows")
    effective = dict(image_env(args.dockerfile))
    effective.update(env)
    missing = sorted(k for k in required if not effective.get(k))
    if missing:
        fail(f"docker-compose.yml's broker lacks {', '.join(missing)}, which the broker requires")
    for k, ok in COMPOSE_NEEDS.items():
        if k not in effective or not ok(effective[k]):
            fail(f"docker-compose.yml's broker: {k}={effective.get(k, '(unset)')!r} does not do what README's 'With Docker' says")

    refused = broker_refuses(args.broker_bin, effective)
    if refused:
        fail(f"the broker refuses docker-compose.yml's settings: {refused}")
    print(f"check-compose: docker-compose.yml's broker sets {len(env)} settings, all known to the broker "
          f"({len(known)} options, {len(OUTSIDE_OPTIONS)} other variables); required ones there "
          f"({', '.join(sorted(required))}); the broker accepts the values", file=sys.stderr)


if __name__ == "__main__":
    main()
