#!/usr/bin/python3
"""Offline checks of ddlguard's Grafana dashboard and provisioning files.

    /usr/bin/python3 deploy/grafana/check-dashboard.py [DASHBOARD_JSON]

Checks, without a Grafana server:
  * the dashboard is JSON with a uid, a title and schemaVersion >= 36;
  * it has the data source variable DS_PROMETHEUS (type datasource, query
    prometheus) and the instance variable, and every panel and query uses
    ${DS_PROMETHEUS} as its data source;
  * panel ids are unique, panels sit inside the 24-column grid and do not
    overlap, every query has a refId unique within its panel, and every
    query filters on instance=~"$instance";
  * every PromQL expression parses: they are written, with Grafana's
    variables replaced by sample values, into a temporary rule file that
    `promtool check rules` must accept ($PROMTOOL, default promtool);
  * the provisioning files parse and point where the README says.

Metric and recording-rule names are checked by deploy/check-metric-names.sh.
Exits 1 with one line per problem.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DS_UID = "${DS_PROMETHEUS}"

problems = []


def problem(msg):
    problems.append(msg)


def all_panels(panels):
    for p in panels:
        yield p
        # Collapsed rows keep their panels inside.
        yield from all_panels(p.get("panels", []))


def check_dashboard(path):
    with open(path, encoding="utf-8") as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            problem(f"{path}: not JSON: {e}")
            return []

    for key in ("uid", "title"):
        if not d.get(key):
            problem(f"{path}: no {key}")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        problem(f"{path}: schemaVersion {d.get('schemaVersion')!r}, want >= 36")

    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem(f"{path}: no data source variable DS_PROMETHEUS of type datasource/prometheus")
    inst = variables.get("instance")
    if not inst or inst.get("type") != "query":
        problem(f"{path}: no query variable 'instance'")
    elif inst.get("datasource", {}).get("uid") != DS_UID:
        problem(f"{path}: variable instance does not use {DS_UID}")

    exprs = []  # (where, expr)
    if inst:
        q = inst.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.+),\s*instance\)", q or "")
        if not m:
            problem(f"{path}: variable instance: want label_values(<selector>, instance), got {q!r}")
        else:
            exprs.append(("variable instance", m.group(1)))

    for a in d.get("annotations", {}).get("list", []):
        if a.get("builtIn"):
            continue
        if a.get("datasource", {}).get("uid") != DS_UID:
            problem(f"{path}: annotation {a.get('name')!r} does not use {DS_UID}")
        if a.get("expr"):
            exprs.append((f"annotation {a.get('name')!r}", a["expr"]))

    ids = {}
    cells = {}
    for p in all_panels(d.get("panels", [])):
        title = p.get("title", "?")
        where = f"panel {p.get('id')} {title!r}"
        pid = p.get("id")
        if not isinstance(pid, int):
            problem(f"{path}: {where}: id is not an integer")
        elif pid in ids:
            problem(f"{path}: {where}: id also used by {ids[pid]!r}")
        else:
            ids[pid] = title

        g = p.get("gridPos", {})
        x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
        if not all(isinstance(v, int) for v in (x, y, w, h)) or w < 1 or h < 1 or x < 0 or x + w > 24:
            problem(f"{path}: {where}: gridPos {g} outside the 24-column grid")
        else:
            for cx in range(x, x + w):
                for cy in range(y, y + h):
                    if (cx, cy) in cells:
                        problem(f"{path}: {where}: overlaps {cells[(cx, cy)]!r} at x={cx} y={cy}")
                        break
                    cells[(cx, cy)] = title
                else:
                    continue
                break

        if p.get("type") == "row":
            continue
        if not p.get("description"):
            problem(f"{path}: {where}: no description")
        if p.get("datasource", {}).get("uid") != DS_UID:
            problem(f"{path}: {where}: data source is not {DS_UID}")
        targets = p.get("targets") or []
        if not targets:
            problem(f"{path}: {where}: no queries")
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refs:
                problem(f"{path}: {where}: missing or repeated refId {ref!r}")
            refs.add(ref)
            if t.get("datasource", {}).get("uid") != DS_UID:
                problem(f"{path}: {where} query {ref}: data source is not {DS_UID}")
            expr = t.get("expr", "")
            if not expr.strip():
                problem(f"{path}: {where} query {ref}: empty expr")
                continue
            if 'instance=~"$instance"' not in expr:
                problem(f"{path}: {where} query {ref}: does not filter on instance=~\"$instance\"")
            exprs.append((f"{where} query {ref}", expr))
    if not ids:
        problem(f"{path}: no panels")
    return exprs


def check_promql(exprs):
    """Let promtool parse every expression, as recording rules."""
    subst = {
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "1h",
        "${__range}": "1h",
        "$instance": ".*",
        "${instance}": ".*",
    }
    rules = []
    for i, (where, expr) in enumerate(exprs):
        e = expr
        for k, v in subst.items():
            e = e.replace(k, v)
        left = re.findall(r"\$\{?\w+", e)
        if left:
            problem(f"{where}: unknown Grafana variable(s) {left} in {expr!r}")
            continue
        rules.append({"record": f"dashboard:check_{i}:expr", "expr": e})
    promtool = os.environ.get("PROMTOOL", "promtool")
    with tempfile.TemporaryDirectory() as tmp:
        rf = os.path.join(tmp, "dashboard-exprs.yml")
        with open(rf, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        try:
            r = subprocess.run([promtool, "check", "rules", rf], capture_output=True, text=True)
        except FileNotFoundError:
            problem(f"{promtool} not found (make deps installs the Debian package prometheus)")
            return
        if r.returncode != 0:
            out = (r.stdout + r.stderr).strip()
            # Map "dashboard:check_N:expr" back to the panel.
            for m in re.finditer(r"dashboard:check_(\d+):expr", out):
                i = int(m.group(1))
                problem(f"{exprs[i][0]}: PromQL does not parse: {exprs[i][1]!r}")
            problem(f"promtool check rules on the dashboard's expressions failed:\n{out}")


def check_provisioning():
    base = os.path.join(HERE, "provisioning")
    dpath = os.path.join(base, "dashboards", "ddlguard.yml")
    spath = os.path.join(base, "datasources", "prometheus.yml")
    try:
        with open(dpath, encoding="utf-8") as f:
            dp = yaml.safe_load(f)
        providers = dp.get("providers") or []
        if dp.get("apiVersion") != 1 or not providers:
            problem(f"{dpath}: want apiVersion 1 and a providers list")
        for p in providers:
            if p.get("type") != "file" or not (p.get("options") or {}).get("path"):
                problem(f"{dpath}: provider {p.get('name')!r} is not a file provider with options.path")
    except (OSError, yaml.YAMLError) as e:
        problem(f"{dpath}: {e}")
    try:
        with open(spath, encoding="utf-8") as f:
            sp = yaml.safe_load(f)
        sources = sp.get("datasources") or []
        if sp.get("apiVersion") != 1 or not any(s.get("type") == "prometheus" for s in sources):
            problem(f"{spath}: want apiVersion 1 and a prometheus data source")
        if sum(1 for s in sources if s.get("isDefault")) != 1:
            problem(f"{spath}: want exactly one default data source (the dashboard's DS_PROMETHEUS picks it)")
        for s in sources:
            if not s.get("url"):
                problem(f"{spath}: data source {s.get('name')!r} has no url")
    except (OSError, yaml.YAMLError) as e:
        problem(f"{spath}: {e}")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "ddlguard-dashboard.json")
    exprs = check_dashboard(path)
    if exprs:
        check_promql(exprs)
    check_provisioning()
    if problems:
        for p in problems:
            print(f"check-dashboard: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"check-dashboard: {path}: OK ({len(exprs)} PromQL expressions parse)")


if __name__ == "__main__":
    main()
