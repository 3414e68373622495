#!/usr/bin/env python3
"""Every metric and label the Grafana dashboard and the Prometheus rules use is
one the broker exports.

Input: a /metrics scrape taken after a real workload (scripts/ops/workload.py),
deploy/grafana/*.json and deploy/prometheus/alerts.yml. Each PromQL expression
(panel targets, template variables' label_values(), rules) is parsed with
promql-parser (the Rust crate's Python bindings), and its tree walked:
  - each selector's metric must be in the scrape (or in ALLOWED_METRICS);
  - each matcher's label must be one of that metric's labels, or a label
    Prometheus adds to every target (job, instance);
  - an `=` matcher's value must have been seen in the scrape; a `=~` matcher's
    regex must match a value seen (else listed in ALLOWED_VALUES with why);
  - by/without, on/ignoring, group_left/right labels must be on the expression
    they apply to, histogram_quantile's argument must carry `le`, and the two
    sides of a one-to-one operation without on/ignoring must carry the same
    labels (else nothing matches);
  - legends ({{label}}) and alert templates ($labels.x) name labels the
    expression's result carries.

usage: check_metrics_use.py METRICS_TXT DASHBOARD_JSON... --rules ALERTS_YML
"""
import argparse
import json
import re
import sys

import promql_parser as pp
import yaml

# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}

# Metrics not exported by the broker but used on purpose, with why.
ALLOWED_METRICS = {
    "up": "Prometheus's own series for each scrape target (UploadBrokerDown)",
}
# (label, value or regex) the workload cannot produce, with why. Keep it short.
ALLOWED_VALUES = {
    ("status", "503"): "/readyz answers 503 only while Postgres or the bucket is down; the workload keeps both up",
    ("status", "5.."): "no request fails with a 5xx in a healthy workload",
    ("outcome", "unreachable|error"): "storage stays reachable and answers in the workload",
}

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


# ---------------------------------------------------------------- the scrape
def parse_scrape(path):
    """{series name: {label: set(values)}} from the text exposition format."""
    series = {}
    label_rx = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+\S+", line)
        if not m:
            raise SystemExit(f"check-metrics-use: cannot read the scrape line {line!r}")
        labels = series.setdefault(m.group(1), {})
        for k, v in label_rx.findall(m.group(2) or ""):
            labels.setdefault(k, set()).add(v.replace('\\"', '"').replace("\\\\", "\\"))
    if not series:
        raise SystemExit(f"check-metrics-use: no series in {path}")
    return series


# ---------------------------------------------------------------- PromQL
def grafana_to_promql(expr):
    """Grafana's variables as PromQL would see them once substituted."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


class Checker:
    def __init__(self, series):
        self.series = series

    def labels_of(self, node, where):
        """The label names of the expression's result; None for a scalar or string."""
        t = type(node).__name__
        if t == "VectorSelector":
            return self.selector(node, where)
        if t == "MatrixSelector":
            return self.selector(node.vector_selector, where)
        if t in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            return self.labels_of(node.expr, where)
        if t in ("NumberLiteral", "StringLiteral"):
            return None
        if t == "Call":
            return self.call(node, where)
        if t == "AggregateExpr":
            return self.aggregate(node, where)
        if t == "BinaryExpr":
            return self.binary(node, where)
        problem(where, f"unexpected PromQL node {t}")
        return set()

    def selector(self, vs, where):
        name = vs.name
        matchers = list(vs.matchers.matchers)
        for m in matchers:
            if m.name == "__name__" and str(m.op) == "MatchOp.Equal":
                name = m.value
        if not name:
            problem(where, "a selector without a metric name")
            return set()
        if name in ALLOWED_METRICS:
            known = {k: None for k in TARGET_LABELS}
        elif name in self.series:
            known = dict(self.series[name])
            for k in TARGET_LABELS:
                known[k] = None
        else:
            near = [s for s in self.series if s.split("_")[:3] == name.split("_")[:3]][:3]
            problem(where, f"metric {name} is not exported by the broker" + (f" (near: {', '.join(near)})" if near else ""))
            return set(TARGET_LABELS)
        for m in matchers:
            if m.name == "__name__":
                continue
            if m.name not in known:
                problem(where, f"{name} has no label {m.name} (it has {', '.join(sorted(known))})")
                continue
            seen = known[m.name]
            if seen is None:  # a target label: values are the deployment's
                continue
            op = str(m.op)
            if op == "MatchOp.Equal" and m.value not in seen and (m.name, m.value) not in ALLOWED_VALUES:
                problem(where, f'{name}{{{m.name}="{m.value}"}}: the broker exported no such value '
                               f"(seen: {', '.join(sorted(seen))})")
            elif op.startswith("MatchOp.Re"):
                rx = re.compile(f"(?:{m.value})\\Z")
                if not any(rx.match(v) for v in seen) and (m.name, m.value) not in ALLOWED_VALUES:
                    problem(where, f'{name}{{{m.name}=~"{m.value}"}}: matches no value the broker exported '
                                   f"(seen: {', '.join(sorted(seen))})")
        return set(known)

    def call(self, node, where):
        fname = node.func.name
        args = list(node.args)
        labels = [self.labels_of(a, where) for a in args]
        vec = next((l for l in labels if l is not None), None)
        if fname == "histogram_quantile":
            inner = labels[1] if len(labels) > 1 else None
            if inner is not None and "le" not in inner:
                problem(where, "histogram_quantile over an expression without the le label "
                               "(aggregate with by (le, ...), over a _bucket series)")
            return (inner or set()) - {"le"}
        if fname in ("label_replace", "label_join"):
            strs = [a.val for a in args if type(a).__name__ == "StringLiteral"]
            dst = strs[0] if strs else None
            srcs = strs[3:] if fname == "label_join" else strs[2:3]
            for s in srcs:
                if s and vec is not None and s not in vec:
                    problem(where, f"{fname} reads label {s}, which the expression does not carry")
            return (vec or set()) | ({dst} if dst else set())
        if fname in ("absent", "absent_over_time"):
            return set(TARGET_LABELS) & (vec or set())
        if fname in ("vector", "time", "scalar", "pi"):
            return set() if fname == "vector" else None
        return vec

    def aggregate(self, node, where):
        inner = self.labels_of(node.expr, where) or set()
        op = str(node.op)
        if op == "count_values" and node.param is not None:
            inner = inner | {node.param.val}
        mod = node.modifier
        if mod is None:
            return inner if op in ("topk", "bottomk", "limitk", "limit_ratio") else set()
        given = set(mod.labels)
        missing = given - inner
        if missing:
            problem(where, f"{op} {str(mod.type).split('.')[-1].lower()} ({', '.join(sorted(missing))}): "
                           f"not a label of the expression (it has {', '.join(sorted(inner))})")
        if op in ("topk", "bottomk", "limitk", "limit_ratio"):
            return inner
        return given if str(mod.type).endswith("By") else inner - given

    def binary(self, node, where):
        lhs = self.labels_of(node.lhs, where)
        rhs = self.labels_of(node.rhs, where)
        if lhs is None or rhs is None:
            return rhs if lhs is None else lhs
        op = str(node.op)
        mod = node.modifier
        matching = mod.matching if mod is not None else None
        card = str(mod.card) if mod is not None else "VectorMatchCardinality.OneToOne"
        group = set(mod.group_labels or []) if mod is not None else set()
        if matching is not None:
            labels = set(matching.labels)
            include = str(matching.type).endswith("Include")
            if include:
                for side, have in (("left", lhs), ("right", rhs)):
                    if labels - have:
                        problem(where, f"on ({', '.join(sorted(labels - have))}): not a label of the {side} side "
                                       f"(it has {', '.join(sorted(have))})")
            elif labels - (lhs | rhs):
                problem(where, f"ignoring ({', '.join(sorted(labels - (lhs | rhs)))}): a label of neither side")
        if op in ("or",):
            return lhs | rhs
        if op in ("and", "unless"):
            return lhs
        if card.endswith("ManyToOne"):
            if group - rhs:
                problem(where, f"group_left ({', '.join(sorted(group - rhs))}): not a label of the right side")
            return lhs | group
        if card.endswith("OneToMany"):
            if group - lhs:
                problem(where, f"group_right ({', '.join(sorted(group - lhs))}): not a label of the left side")
            return rhs | group
        # One-to-one.
        if matching is None and lhs != rhs:
            problem(where, f"`{op}` between results with different labels ({', '.join(sorted(lhs)) or 'none'} | "
                           f"{', '.join(sorted(rhs)) or 'none'}): no series would match; aggregate both sides "
                           f"by the same labels or use on()/ignoring()")
        if matching is not None and str(matching.type).endswith("Include") and not getattr(mod, "return_bool", False) \
                and op not in ("==", "!=", ">", "<", ">=", "<="):
            return set(matching.labels)
        if matching is not None and not str(matching.type).endswith("Include"):
            return lhs - set(matching.labels)
        return lhs

    def expr(self, text, where, legend_labels=()):
        try:
            tree = pp.parse(text)
        except Exception as e:  # the parser's own message names the position
            problem(where, f"does not parse as PromQL: {e}")
            return None
        out = self.labels_of(tree, where)
        for lab in legend_labels:
            if out is None or lab not in out:
                problem(where, f"names label {lab}, which the expression's result does not carry "
                               f"(it has {', '.join(sorted(out or [])) or 'none'})")
        return out


# ---------------------------------------------------------------- inputs
def dashboard_exprs(path):
    doc = json.load(open(path, encoding="utf-8"))
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat") or "")
                    out.append((f"{path}: panel {p.get('title')!r} query {t.get('refId')}", t["expr"], legend))
            walk(p.get("panels", []))

    walk(doc.get("panels", []))
    if not out:
        problem(path, "no panel queries found")
    variables = []
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        variables.append((f"{path}: variable ${v.get('name')}", q or ""))
    return out, variables


def rule_exprs(path):
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    out = []
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            name = r.get("alert") or r.get("record")
            texts = list((r.get("annotations") or {}).values()) + list((r.get("labels") or {}).values())
            used = sorted({m for t in texts for m in re.findall(r"\$labels\.(\w+)", str(t))})
            out.append((f"{path}: rule {name}", r["expr"], used))
    if not out:
        problem(path, "no rules found")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics")
    ap.add_argument("dashboards", nargs="+")
    ap.add_argument("--rules", action="append", default=[])
    args = ap.parse_args()
    checker = Checker(parse_scrape(args.metrics))
    n = 0
    for d in args.dashboards:
        exprs, variables = dashboard_exprs(d)
        for where, text, legend in exprs:
            checker.expr(grafana_to_promql(text), where, legend)
            n += 1
        for where, q in variables:
            m = re.fullmatch(r"\s*label_values\((.*?)(?:,\s*(\w+))?\)\s*", q, re.S)
            if not m:
                problem(where, f"only label_values(...) variables are checked, not {q!r}")
                continue
            if m.group(2) is None:  # label_values(label): any series
                if not any(m.group(1) in labs for labs in checker.series.values()) and m.group(1) not in TARGET_LABELS:
                    problem(where, f"no exported series has the label {m.group(1)}")
            else:
                checker.expr(grafana_to_promql(m.group(1)), where, [m.group(2)])
            n += 1
    for r in args.rules:
        for where, text, used in rule_exprs(r):
            checker.expr(text, where, used)
            n += 1
    if problems:
        print("check-metrics-use: FAIL: what the dashboards and rules use that the broker does not export:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print(f"check-metrics-use: {n} expressions (panels, variables, rules) use only metrics and labels the broker "
          f"exported ({len(checker.series)} series names in the scrape; allowed beyond it: "
          f"{', '.join(ALLOWED_METRICS)} and {len(ALLOWED_VALUES)} label values)", file=sys.stderr)


if __name__ == "__main__":
    main()
