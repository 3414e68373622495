#!/usr/bin/env python3
"""deploy/kubernetes/ validates offline and holds together.

1. Every manifest validates strictly (unknown fields refused) against the
   Kubernetes JSON schemas kubernetes-validate ships, for the oldest version the
   manifests support (1.30: the preStop `sleep` action) and the newest it has.
   Two kinds have no schema there and are skipped by name, with what is checked
   instead: ServiceMonitor (a Prometheus Operator CRD: its selector and port
   are checked against the Service below) and Kustomization (its resources
   must exist).
2. Cross-references: the Service, PodDisruptionBudget, NetworkPolicy and
   ServiceMonitor select the Deployment's pods; ports and probes name ports the
   container has; BROKER_LISTEN / METRICS_LISTEN match the container ports; the
   ConfigMap and Secret set only settings the broker binary knows, with the
   required ones, and the broker accepts their values; the migration Job sets
   only what `migrate` knows; the grace period outlasts preStop plus
   BROKER_SHUTDOWN_TIMEOUT; the PDB leaves the HPA's minimum room to drain.

usage: check_kubernetes.py BROKER_BIN [DIR]
"""
import os
import re
import subprocess
import sys

import kubernetes_validate as kv
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_compose import OUTSIDE_OPTIONS, broker_refuses, broker_settings  # noqa: E402

VERSIONS = ["1.30.0", kv.utils.latest_version()]
NO_SCHEMA = {
    "ServiceMonitor": "a Prometheus Operator CRD, not in the Kubernetes schemas: selector and port checked against the Service",
    "Kustomization": "kustomize's file, not a Kubernetes object: its resources checked to exist",
}
problems = []


def problem(msg):
    problems.append(msg)


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text).strip())
    if not m:
        problem(f"cannot read the duration {text!r}")
        return 0
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * {"s": 1, "m": 60, "h": 3600}[unit]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def main():
    binary = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folder = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "deploy", "kubernetes")
    objs, skipped, validated = {}, [], 0
    files = sorted(f for f in os.listdir(folder) if f.endswith((".yaml", ".yml")))
    for f in files:
        for doc in yaml.safe_load_all(open(os.path.join(folder, f), encoding="utf-8")):
            if not doc:
                continue
            kind = doc.get("kind")
            objs.setdefault(kind, []).append((f, doc))
            if kind in NO_SCHEMA:
                skipped.append(f"{f} ({kind}: {NO_SCHEMA[kind]})")
                continue
            for v in VERSIONS:
                try:
                    kv.validate(doc, v, strict=True)
                    validated += 1
                except kv.utils.ValidationError as e:
                    problem(f"{f}: {kind}/{doc.get('metadata', {}).get('name')} does not validate against "
                            f"Kubernetes {v}: {'.'.join(str(p) for p in e.path)}: {e.message}")
                except kv.utils.SchemaNotFoundError as e:
                    problem(f"{f}: no schema for {kind} ({doc.get('apiVersion')}) in Kubernetes {v}: {e}")

    def one(kind):
        items = objs.get(kind, [])
        if len(items) != 1:
            problem(f"expected one {kind}, found {len(items)}")
            return None
        return items[0][1]

    dep, svc, cm, sec = one("Deployment"), one("Service"), one("ConfigMap"), one("Secret")
    pdb, hpa, netpol, sm = one("PodDisruptionBudget"), one("HorizontalPodAutoscaler"), one("NetworkPolicy"), one("ServiceMonitor")
    job, kust = one("Job"), one("Kustomization")
    if problems:
        finish(validated, skipped)
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}

    if not selects(dep["spec"]["selector"]["matchLabels"], pod_labels):
        problem("the Deployment's selector does not match its pod labels")
    if not selects(svc["spec"]["selector"], pod_labels):
        problem("the Service does not select the Deployment's pods")
    for p in svc["spec"]["ports"]:
        if p["targetPort"] not in ports and p["targetPort"] not in ports.values():
            problem(f"the Service's port {p['name']} targets {p['targetPort']}, which the container does not have")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        pr = c.get(probe)
        if not pr:
            problem(f"the container has no {probe}")
            continue
        if pr["httpGet"]["path"] != path or pr["httpGet"]["port"] not in ports:
            problem(f"{probe} must GET {path} on a named container port (has {pr['httpGet']})")
    if not selects(pdb["spec"]["selector"]["matchLabels"], pod_labels):
        problem("the PodDisruptionBudget does not select the Deployment's pods")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
        problem("the HorizontalPodAutoscaler does not scale the Deployment")
    if pdb["spec"].get("minAvailable", 0) >= min(hpa["spec"]["minReplicas"], dep["spec"]["replicas"]):
        problem("the PodDisruptionBudget's minAvailable leaves no pod to evict at the HPA's minimum: drains would block")
    if not selects(netpol["spec"]["podSelector"]["matchLabels"], pod_labels):
        problem("the NetworkPolicy does not select the Deployment's pods")
    open_ports = {p.get("port") for rule in netpol["spec"].get("ingress", []) for p in rule.get("ports", [])}
    for name, port in ports.items():
        if port not in open_ports and name not in open_ports:
            problem(f"the NetworkPolicy lets no traffic in to container port {name} ({port})")
    if not selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})):
        problem("the ServiceMonitor does not select the Service")
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in {p["name"] for p in svc["spec"]["ports"]}:
            problem(f"the ServiceMonitor scrapes port {ep.get('port')}, which the Service does not name")
    for r in kust.get("resources", []):
        if not os.path.exists(os.path.join(folder, r)):
            problem(f"kustomization.yaml lists {r}, which does not exist")

    # Settings: known to the binary, required ones there, values accepted.
    known, required = broker_settings(binary)
    env_from = {(e.get("configMapRef") or e.get("secretRef") or {}).get("name") for e in c.get("envFrom", [])}
    if not {cm["metadata"]["name"], sec["metadata"]["name"]} <= env_from:
        problem("the container does not take its settings from the ConfigMap and the Secret (envFrom)")
    settings = dict(cm.get("data", {}))
    settings.update(sec.get("stringData", {}))
    for e in c.get("env", []):
        settings[e["name"]] = e.get("value", "")
    unknown = sorted(k for k in settings if k not in known and k not in OUTSIDE_OPTIONS)
    if unknown:
        problem(f"the broker does not know {', '.join(unknown)} (ConfigMap/Secret); `upload-broker serve --help` lists what it knows")
    missing = sorted(k for k in required if not settings.get(k))
    if missing:
        problem(f"the ConfigMap and Secret lack {', '.join(missing)}, which the broker requires")
    for var, port_name in (("BROKER_LISTEN", "http"), ("METRICS_LISTEN", "metrics")):
        if var in settings:
            if not settings[var].startswith("0.0.0.0:") or int(settings[var].rsplit(":", 1)[1]) != ports.get(port_name):
                problem(f"{var}={settings[var]} does not listen on all addresses at the container port {port_name} ({ports.get(port_name)})")
    if not unknown and not missing:
        refused = broker_refuses(binary, settings)
        if refused:
            problem(f"the broker refuses the ConfigMap's and Secret's settings: {refused}")
    migrate_help = subprocess.run([binary, "migrate", "--help"], stdout=subprocess.PIPE, text=True, check=True).stdout
    migrate_known = set(re.findall(r"\[env: ([A-Z0-9_]+)", migrate_help)) | OUTSIDE_OPTIONS
    jc = job["spec"]["template"]["spec"]["containers"][0]
    if jc.get("args") != ["migrate"]:
        problem(f"the migration Job runs {jc.get('args')}, not [migrate]")
    for e in jc.get("env", []):
        if e["name"] not in migrate_known:
            problem(f"the migration Job sets {e['name']}, which `upload-broker migrate` does not read")

    # The drain: the grace period covers the preStop sleep and the broker's own drain.
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    pre = (c.get("lifecycle", {}).get("preStop", {}).get("sleep") or {}).get("seconds", 0)
    drain = seconds(settings.get("BROKER_SHUTDOWN_TIMEOUT", "30s"))
    if pre < 5:
        problem("no preStop sleep of at least 5 s: the broker stops accepting on SIGTERM at once, "
                "before every proxy has removed the pod's endpoint")
    if grace < pre + drain + 5:
        problem(f"terminationGracePeriodSeconds {grace} < preStop {pre} s + BROKER_SHUTDOWN_TIMEOUT {drain:g} s + 5 s: "
                f"requests still draining would be killed")
    finish(validated, skipped)


def finish(validated, skipped):
    if problems:
        print("check-kubernetes: FAIL:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print(f"check-kubernetes: {validated} validations passed (strict, Kubernetes {' and '.join(VERSIONS)}); "
          f"cross-references hold; schema skipped for: {'; '.join(skipped)}", file=sys.stderr)
    sys.exit(0)


if __name__ == "__main__":
    main()
