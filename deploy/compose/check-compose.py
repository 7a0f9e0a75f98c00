#!/usr/bin/env python3
"""Check the compose example without a Docker engine (`make check-compose`).

    check-compose.py DDLGUARD_BINARY

Asserts: docker-compose.yml parses and has the services postgres (the
official image, major 16), ddlguard (built from the repository's
Dockerfile), prometheus and grafana; every image is pinned (a tag, not
latest); every bind mount's source exists; ddlguard's config file is mounted
where the image reads it and passes `ddlguard check-config` with the
compose environment; its ports match the published ones; the stop grace
period covers shutdown.delay + drain_timeout; Prometheus scrapes ddlguard's
admin port and loads deploy/prometheus/ddlguard-rules.yml (`promtool check
config` on the files as the container sees them); Grafana gets
deploy/grafana's provisioning and dashboard where the provisioning file looks
for it, with a data source pointing at the prometheus service; the init SQL
creates the monitor role of the DSN with pg_monitor.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

here = os.path.dirname(os.path.abspath(__file__))
problems = []


def fail(msg):
    problems.append(msg)


def duration_seconds(s):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    s = str(s).strip()
    if s == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(s)
    return sum(float(n) * units[u] for n, u in parts)


def mounts(svc):
    """(host path, container path) for each bind mount."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            src, dst = parts[0], parts[1]
        else:
            src, dst = v.get("source"), v.get("target")
        if src.startswith(".") or src.startswith("/"):
            out.append((os.path.normpath(os.path.join(here, src)), dst))
    return out


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else None
    if not binary:
        print("usage: check-compose.py DDLGUARD_BINARY", file=sys.stderr)
        return 2
    path = os.path.join(here, "docker-compose.yml")
    try:
        doc = yaml.safe_load(open(path))
    except yaml.YAMLError as e:
        print(f"check-compose: FAIL: {path}: {e}", file=sys.stderr)
        return 1
    services = doc.get("services") or {}
    for name in ("postgres", "ddlguard", "prometheus", "grafana"):
        if name not in services:
            fail(f"no service {name}")
    if problems:
        return report()

    for name, svc in services.items():
        img = svc.get("image")
        if not img:
            fail(f"{name}: no image")
            continue
        last = img.split("@")[0].rsplit("/", 1)[-1]
        if "@sha256:" not in img and (":" not in last or last.endswith(":latest")):
            fail(f"{name}: image {img} is not pinned to a tag")
        for src, dst in mounts(svc):
            if not os.path.exists(src):
                fail(f"{name}: bind mount source {os.path.relpath(src, here)} does not exist")
    pg_img = services["postgres"]["image"]
    if not re.match(r"^(docker\.io/(library/)?)?postgres:16(\.\d+)?(-\w+)?$", pg_img):
        fail(f"postgres: image {pg_img} is not the official PostgreSQL 16 image")

    # ddlguard
    dg = services["ddlguard"]
    build = dg.get("build") or {}
    ctx = os.path.normpath(os.path.join(here, build.get("context", ".")))
    dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
    repo = os.path.normpath(os.path.join(here, "..", ".."))
    if ctx != repo or not os.path.isfile(dockerfile):
        fail(f"ddlguard: build context {ctx} / {dockerfile}: want the repository root and its Dockerfile")
    dmounts = {dst: src for src, dst in mounts(dg)}
    cfg_file = dmounts.get("/etc/ddlguard/ddlguard.yaml")
    if not cfg_file:
        fail("ddlguard: nothing mounted at /etc/ddlguard/ddlguard.yaml (the image's --config)")
        return report()
    cmd = dg.get("command")
    if cmd is not None and cmd != ["--config", "/etc/ddlguard/ddlguard.yaml"]:
        fail(f"ddlguard: command {cmd} does not read the mounted config")
    cfg = yaml.safe_load(open(cfg_file))
    env = dg.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    published = {}
    for p in dg.get("ports") or []:
        m = re.match(r"^(?:([\d.]+):)?(\d+):(\d+)$", str(p))
        if m:
            published[int(m.group(3))] = m.group(1)
    for key, what in (("listen", "client"), ("admin", "admin")):
        listen = cfg.get("listen") if key == "listen" else (cfg.get("admin") or {}).get("listen", "")
        m = re.match(r"^(.*):(\d+)$", str(listen))
        if not m or m.group(1) not in ("0.0.0.0", ""):
            fail(f"ddlguard.yaml: {what} listen {listen!r} must be 0.0.0.0:PORT inside a container")
        elif int(m.group(2)) not in published:
            fail(f"ddlguard: {what} port {m.group(2)} is not published")
    admin_port = int(re.sub(r".*:", "", (cfg.get("admin") or {}).get("listen", "0")))
    for port, hostip in published.items():
        if hostip not in ("127.0.0.1", "::1"):
            fail(f"ddlguard: port {port} published on all host addresses; bind 127.0.0.1")
    if "upstream" not in cfg or not str(cfg["upstream"]).startswith("postgres:"):
        fail(f"ddlguard.yaml: upstream {cfg.get('upstream')!r} is not the postgres service")
    try:
        sd = cfg.get("shutdown") or {}
        need = duration_seconds(sd.get("drain_timeout", "30s")) + duration_seconds(sd.get("delay", "0"))
        if duration_seconds(dg.get("stop_grace_period", "10s")) <= need:
            fail(f"ddlguard: stop_grace_period {dg.get('stop_grace_period', '10s')} does not exceed shutdown delay + drain_timeout ({need:g}s)")
    except ValueError as e:
        fail(f"ddlguard: bad duration {e}")
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    run_env.update({k: str(v) for k, v in env.items() if k.startswith("DDLGUARD_")})
    r = subprocess.run([binary, "check-config", "--config", cfg_file], capture_output=True, text=True, env=run_env)
    if r.returncode != 0:
        fail(f"ddlguard check-config rejects {os.path.relpath(cfg_file, here)} with the compose environment: {(r.stderr or r.stdout).strip()}")

    # The monitor role: created by the init SQL as the DSN names it.
    dsn = env.get("DDLGUARD_MONITOR_DSN", "")
    m = re.match(r"^postgres(?:ql)?://([^:@/]+):([^@/]+)@([^:/]+)", dsn)
    sql_files = [os.path.join(src, f) for src, dst in mounts(services["postgres"])
                 if dst == "/docker-entrypoint-initdb.d" for f in sorted(os.listdir(src))]
    sql = "\n".join(open(f).read() for f in sql_files)
    if not m:
        fail("ddlguard: DDLGUARD_MONITOR_DSN is not a postgres://user:password@host URL")
    else:
        user, password, host = m.groups()
        if host != "postgres":
            fail(f"ddlguard: the monitor DSN's host {host} is not the postgres service")
        if not re.search(rf"CREATE ROLE {re.escape(user)} LOGIN PASSWORD '{re.escape(password)}'", sql):
            fail(f"postgres: the init SQL does not create role {user} with the DSN's password")
        if not re.search(rf"GRANT pg_monitor TO {re.escape(user)}\b", sql):
            fail(f"postgres: the init SQL does not grant pg_monitor to {user}")

    # Prometheus: the config and the rules as the container sees them.
    pm = {dst: src for src, dst in mounts(services["prometheus"])}
    pconf = pm.get("/etc/prometheus/prometheus.yml")
    if not pconf:
        fail("prometheus: nothing mounted at /etc/prometheus/prometheus.yml")
    else:
        rules_src = os.path.normpath(os.path.join(here, "..", "prometheus", "ddlguard-rules.yml"))
        pc = yaml.safe_load(open(pconf))
        for rf in pc.get("rule_files") or []:
            target = os.path.normpath(os.path.join("/etc/prometheus", rf))
            if target not in pm:
                fail(f"prometheus: rule file {rf} ({target}) is not mounted")
            elif pm[target] != rules_src:
                fail(f"prometheus: {target} is mounted from {pm[target]}, not deploy/prometheus/ddlguard-rules.yml")
        if not pc.get("rule_files"):
            fail("prometheus: loads no rule files")
        jobs = {j.get("job_name"): j for j in pc.get("scrape_configs") or []}
        dj = next((j for n, j in jobs.items() if "ddlguard" in (n or "")), None)
        targets = [t for sc in (dj or {}).get("static_configs") or [] for t in sc.get("targets") or []]
        if f"ddlguard:{admin_port}" not in targets:
            fail(f"prometheus: no job with \"ddlguard\" in its name scraping ddlguard:{admin_port}")
        promtool = os.environ.get("PROMTOOL", "promtool")
        tmp = tempfile.mkdtemp(prefix="compose-prom-")
        try:
            for dst, src in pm.items():
                if dst.startswith("/etc/prometheus/"):
                    shutil.copy(src, os.path.join(tmp, os.path.basename(dst)))
            r = subprocess.run([promtool, "check", "config", os.path.join(tmp, "prometheus.yml")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"promtool check config {os.path.relpath(pconf, here)} (as mounted): {(r.stdout + r.stderr).strip()}")
        except FileNotFoundError:
            fail(f"{promtool} not found (make deps installs prometheus)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # Grafana: provisioning and the dashboard where the provider looks.
    gm = {dst: src for src, dst in mounts(services["grafana"])}
    prov = gm.get("/etc/grafana/provisioning")
    if not prov:
        fail("grafana: nothing mounted at /etc/grafana/provisioning")
    else:
        for f in sorted(os.listdir(os.path.join(prov, "dashboards"))):
            d = yaml.safe_load(open(os.path.join(prov, "dashboards", f)))
            for p in d.get("providers") or []:
                want = (p.get("options") or {}).get("path")
                if not any(dst.startswith(want.rstrip("/") + "/") and src.endswith(".json") for dst, src in gm.items()):
                    fail(f"grafana: provider {p.get('name')} reads {want}, where no dashboard JSON is mounted")
        for f in sorted(os.listdir(os.path.join(prov, "datasources"))):
            d = yaml.safe_load(open(os.path.join(prov, "datasources", f)))
            for ds in d.get("datasources") or []:
                if ds.get("type") == "prometheus" and not re.match(r"^http://prometheus:9090/?$", ds.get("url", "")):
                    fail(f"grafana: data source {ds.get('name')} points at {ds.get('url')}, not the prometheus service")
    return report()


def report():
    for p in problems:
        print("check-compose: FAIL: " + p, file=sys.stderr)
    if not problems:
        print("check-compose: ok (docker-compose.yml, ddlguard.yaml, prometheus.yml, grafana provisioning, init SQL)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
