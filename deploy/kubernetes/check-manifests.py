#!/usr/bin/env python3
"""Check ddlguard's Kubernetes objects: the plain manifests in this directory
and the Helm chart's rendered output run through the same checks.

    check-manifests.py [options] FILE...      (FILE "-": stdin)

Exit 1 with one line per problem. Needs python3-yaml only; with --ddlguard
BIN it also runs `ddlguard check-config` on the ConfigMap's ddlguard.yaml,
laid out as the pod sees it (the projected volume's files, with a throwaway
self-signed certificate for the TLS Secret, which needs openssl).

What it asserts:
  * every document has apiVersion, kind, metadata.name and no namespace
    (kubectl -n / helm --namespace pick it); no Secret objects (only
    references to Secrets); names and labels are valid;
  * one ConfigMap, Deployment and Service, a PodDisruptionBudget unless
    --no-pdb, a ServiceMonitor / PrometheusRule exactly when asked;
  * Deployment: replicas; selector matches the pod labels and the Service's
    and PDB's selectors select the pods; image pinned (tag, not latest);
    ports postgres 6432 and admin 6433 matching listen and admin.listen in
    ddlguard.yaml (admin not on loopback, so the kubelet can probe it);
    readiness GET /readyz, liveness and startup GET /healthz, all on the
    admin port; preStop is the native sleep action (no exec: no shell in
    the image); terminationGracePeriodSeconds = preStop sleep +
    shutdown.delay + shutdown.drain_timeout + 10 (from ddlguard.yaml);
    requests and limits for cpu and memory (limits: memory at least);
    non-root (pod or container runAsNonRoot, uid not 0),
    readOnlyRootFilesystem, allowPrivilegeEscalation false, drop ALL;
    args --config pointing at the ConfigMap's ddlguard.yaml through a
    volume mount; DDLGUARD_MONITOR_DSN / DDLGUARD_ADMIN_TOKEN from
    secretKeyRefs when asked (and never as literal values); every *_file in
    ddlguard.yaml provided by a mounted volume item;
  * ddlguard.yaml: listen and admin.listen on 0.0.0.0, upstream set,
    log.format json, shutdown.drain_timeout set, no admin.token or
    monitor.dsn literal; client TLS set exactly when --tls;
  * Service: port 5432 "postgres" and an "admin" port reaching the
    container's named ports;
  * PDB: minAvailable below replicas (else it blocks every drain);
  * ServiceMonitor: scrapes port admin at /metrics, selects the Service,
    jobLabel yields a job matching the DDLGuardDown alert's ".*ddlguard.*";
  * PrometheusRule: spec.groups equal to --rules FILE's groups, with every
    alert of that file.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

problems = []


def fail(where, msg):
    problems.append(f"{where}: {msg}")


def dig(obj, *path, default=None):
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and p < len(obj):
            obj = obj[p]
        else:
            return default
    return obj


def duration_seconds(s):
    """A Go duration (30s, 1m30s, 500ms, 0) in seconds."""
    s = str(s).strip()
    if s == "0":
        return 0.0
    total, rest = 0.0, s
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", s):
        total += float(num) * units[unit]
        rest = rest.replace(num + unit, "", 1)
    if rest:
        raise ValueError(f"{s!r} is not a duration")
    return total


DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def load(files):
    docs = []
    for f in files:
        text = sys.stdin.read() if f == "-" else open(f).read()
        try:
            for i, d in enumerate(yaml.safe_load_all(text)):
                if d is None:
                    continue
                docs.append((f"{f}#{i}", d))
        except yaml.YAMLError as e:
            fail(f, f"YAML does not parse: {e}")
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--tls", action="store_true", help="client TLS is configured and mounted")
    ap.add_argument("--monitor-secret", action="store_true", help="DDLGUARD_MONITOR_DSN comes from a secretKeyRef")
    ap.add_argument("--admin-token-secret", action="store_true", help="DDLGUARD_ADMIN_TOKEN comes from a secretKeyRef")
    ap.add_argument("--no-pdb", action="store_true")
    ap.add_argument("--service-monitor", action="store_true")
    ap.add_argument("--rules", help="expect a PrometheusRule whose groups equal this rules file's")
    ap.add_argument("--ddlguard", help="run BIN check-config on the mounted ddlguard.yaml")
    ap.add_argument("--expect-config", action="append", default=[], metavar="PATH=VALUE",
                    help="a setting ddlguard.yaml must have, e.g. guard.lock_timeout=1s")
    ap.add_argument("--kustomization", help="a kustomization.yaml whose resources must be exactly FILES")
    a = ap.parse_args()

    docs = load(a.files)
    if a.kustomization:
        k = yaml.safe_load(open(a.kustomization))
        kdir = os.path.dirname(os.path.abspath(a.kustomization))
        listed = sorted(os.path.normpath(os.path.join(kdir, r)) for r in k.get("resources", []))
        given = sorted(os.path.abspath(f) for f in a.files)
        if listed != given:
            fail(a.kustomization, f"resources {k.get('resources')} differ from the manifests checked {a.files}")
        if k.get("namespace"):
            fail(a.kustomization, "sets a namespace: leave it to kubectl -n")
        for img in k.get("images", []):
            if img.get("newTag") in (None, "", "latest"):
                fail(a.kustomization, f"images: {img.get('name')}: pin newTag (not latest)")

    by_kind = {}
    for where, d in docs:
        if not isinstance(d, dict):
            fail(where, "not a mapping")
            continue
        for field in ("apiVersion", "kind"):
            if not d.get(field):
                fail(where, f"no {field}")
        name = dig(d, "metadata", "name")
        if not name:
            fail(where, "no metadata.name")
        elif not DNS1123.match(name) or len(name) > 63:
            fail(where, f"metadata.name {name!r} is not a DNS label")
        if dig(d, "metadata", "namespace"):
            fail(where, "sets metadata.namespace: leave it to kubectl -n / helm --namespace")
        for k, v in (dig(d, "metadata", "labels") or {}).items():
            if not isinstance(v, str) or len(v) > 63 or not re.match(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$", v):
                fail(where, f"label {k}={v!r} is not a valid label value")
        by_kind.setdefault(d.get("kind"), []).append((where, d))

    if "Secret" in by_kind:
        fail(by_kind["Secret"][0][0], "a Secret object: the manifests should only reference Secrets")
    want = {"ConfigMap": 1, "Deployment": 1, "Service": 1,
            "PodDisruptionBudget": 0 if a.no_pdb else 1,
            "ServiceMonitor": 1 if a.service_monitor else 0,
            "PrometheusRule": 1 if a.rules else 0}
    for kind, n in want.items():
        got = len(by_kind.get(kind, []))
        if got != n:
            fail("manifests", f"{got} {kind} object(s), want {n}")
    known = set(want) | {"ServiceAccount"}
    for kind in by_kind:
        if kind not in known:
            fail(by_kind[kind][0][0], f"unexpected kind {kind}")
    if problems:
        return report()

    cm_where, cm = by_kind["ConfigMap"][0]
    dep_where, dep = by_kind["Deployment"][0]
    svc_where, svc = by_kind["Service"][0]

    # --- ddlguard.yaml --------------------------------------------------
    raw = dig(cm, "data", "ddlguard.yaml")
    if not raw:
        fail(cm_where, "no data.ddlguard.yaml")
        return report()
    try:
        cfg = yaml.safe_load(raw) or {}
    except yaml.YAMLError as e:
        fail(cm_where, f"ddlguard.yaml does not parse: {e}")
        return report()

    def port_of(listen, key):
        m = re.match(r"^(.*):(\d+)$", str(listen or ""))
        if not m:
            fail(cm_where, f"ddlguard.yaml {key}: {listen!r} is not host:port")
            return None, None
        return m.group(1), int(m.group(2))

    host, listen_port = port_of(cfg.get("listen"), "listen")
    if host not in ("0.0.0.0", "", "[::]", None):
        fail(cm_where, f"ddlguard.yaml listen {cfg.get('listen')}: bind all addresses (0.0.0.0) so the Service reaches it")
    ahost, admin_port = port_of(dig(cfg, "admin", "listen"), "admin.listen")
    if ahost not in ("0.0.0.0", "", "[::]", None):
        fail(cm_where, f"ddlguard.yaml admin.listen {dig(cfg, 'admin', 'listen')}: the kubelet's probes and Prometheus need it off loopback")
    if not cfg.get("upstream"):
        fail(cm_where, "ddlguard.yaml sets no upstream")
    if dig(cfg, "log", "format") != "json":
        fail(cm_where, "ddlguard.yaml log.format should be json")
    if dig(cfg, "admin", "token"):
        fail(cm_where, "ddlguard.yaml holds admin.token: use a Secret (DDLGUARD_ADMIN_TOKEN)")
    if dig(cfg, "monitor", "dsn"):
        fail(cm_where, "ddlguard.yaml holds monitor.dsn: use a Secret (DDLGUARD_MONITOR_DSN)")
    try:
        drain = duration_seconds(dig(cfg, "shutdown", "drain_timeout", default=""))
    except ValueError:
        fail(cm_where, "ddlguard.yaml shutdown.drain_timeout is missing or not a duration")
        drain = None
    try:
        delay = duration_seconds(dig(cfg, "shutdown", "delay", default="0"))
    except ValueError:
        fail(cm_where, "ddlguard.yaml shutdown.delay is not a duration")
        delay = None
    has_tls = bool(dig(cfg, "client_tls", "cert_file"))
    if has_tls != a.tls:
        fail(cm_where, f"ddlguard.yaml client_tls.cert_file {'set' if has_tls else 'not set'}, want {'set' if a.tls else 'not set'}")
    for spec in a.expect_config:
        path, _, value = spec.partition("=")
        got = dig(cfg, *path.split("."))
        if str(got) != value:
            fail(cm_where, f"ddlguard.yaml {path} = {got!r}, want {value!r}")

    # --- Deployment -----------------------------------------------------
    spec = dep.get("spec", {})
    pod = dig(spec, "template", "spec") or {}
    pod_labels = dig(spec, "template", "metadata", "labels") or {}
    if spec.get("replicas") != a.replicas:
        fail(dep_where, f"replicas {spec.get('replicas')}, want {a.replicas}")
    sel = dig(spec, "selector", "matchLabels") or {}
    if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
        fail(dep_where, "selector.matchLabels do not match the pod template's labels")
    containers = pod.get("containers") or []
    c = next((x for x in containers if x.get("name") == "ddlguard"), None)
    if c is None:
        fail(dep_where, "no container named ddlguard")
        return report()
    cw = f"{dep_where} container ddlguard"

    image = c.get("image", "")
    last = image.split("@")[0].rsplit("/", 1)[-1]
    if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
        fail(cw, f"image {image!r}: pin a tag (not latest) or a digest")

    ports = {p.get("name"): p for p in c.get("ports") or []}
    if dig(ports, "postgres", "containerPort") != listen_port:
        fail(cw, f"port postgres {dig(ports, 'postgres', 'containerPort')} != ddlguard.yaml listen port {listen_port}")
    if dig(ports, "admin", "containerPort") != admin_port:
        fail(cw, f"port admin {dig(ports, 'admin', 'containerPort')} != ddlguard.yaml admin.listen port {admin_port}")

    def probe(kind, path, required=True):
        p = c.get(kind)
        if not p:
            if required:
                fail(cw, f"no {kind}")
            return
        hg = p.get("httpGet") or {}
        if hg.get("path") != path:
            fail(cw, f"{kind} GET {hg.get('path')!r}, want {path}")
        if hg.get("port") not in ("admin", admin_port):
            fail(cw, f"{kind} port {hg.get('port')!r}, want the admin port")
        if hg.get("scheme", "HTTP") != "HTTP" and not dig(cfg, "admin", "cert_file"):
            fail(cw, f"{kind} scheme {hg.get('scheme')} but the admin listener serves plain HTTP")

    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/healthz")
    probe("startupProbe", "/healthz", required=False)

    pre = dig(c, "lifecycle", "preStop") or {}
    if "exec" in pre:
        fail(cw, "preStop exec: the image has no shell or sleep binary; use the native sleep action")
    sleep = dig(pre, "sleep", "seconds")
    if not isinstance(sleep, int) or sleep < 1:
        fail(cw, f"lifecycle.preStop.sleep.seconds {sleep!r}, want a positive whole number")
        sleep = 0
    grace = pod.get("terminationGracePeriodSeconds")
    if drain is not None and delay is not None:
        want_grace = sleep + delay + drain + 10
        if grace != want_grace:
            fail(dep_where, f"terminationGracePeriodSeconds {grace}, want preStop {sleep} + shutdown.delay {delay:g} + "
                 f"drain_timeout {drain:g} + 10 = {want_grace:g}")

    res = c.get("resources") or {}
    for k in ("cpu", "memory"):
        if not dig(res, "requests", k):
            fail(cw, f"no resources.requests.{k}")
    if not dig(res, "limits", "memory"):
        fail(cw, "no resources.limits.memory")

    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
    if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
        fail(cw, "runAsNonRoot is not true (pod or container)")
    if csc.get("runAsUser", psc.get("runAsUser")) == 0:
        fail(cw, "runs as uid 0")
    if csc.get("readOnlyRootFilesystem") is not True:
        fail(cw, "securityContext.readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail(cw, "securityContext.allowPrivilegeEscalation is not false")
    if "ALL" not in (dig(csc, "capabilities", "drop") or []):
        fail(cw, "securityContext.capabilities.drop lacks ALL")
    if dig(csc, "capabilities", "add"):
        fail(cw, f"adds capabilities {dig(csc, 'capabilities', 'add')}")

    env = {e.get("name"): e for e in c.get("env") or []}
    for name, e in env.items():
        if re.search(r"TOKEN|DSN|PASSWORD|KEY", name or "") and "value" in e:
            fail(cw, f"env {name} has a literal value: take it from a Secret")
    for name, wanted in (("DDLGUARD_MONITOR_DSN", a.monitor_secret), ("DDLGUARD_ADMIN_TOKEN", a.admin_token_secret)):
        ref = dig(env.get(name), "valueFrom", "secretKeyRef")
        if wanted and not (ref and ref.get("name") and ref.get("key")):
            fail(cw, f"env {name} should come from a secretKeyRef")
        if not wanted and name in env:
            fail(cw, f"env {name} is set but was not expected")

    # The files the pod sees: mountPath -> {relative path: (source kind, name, key)}.
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    files = {}
    for m in c.get("volumeMounts") or []:
        v = volumes.get(m.get("name"))
        if v is None:
            fail(cw, f"volumeMount {m.get('name')} names no volume")
            continue
        if m.get("subPath"):
            fail(cw, f"volumeMount {m.get('name')} uses subPath: the file would never update")
        if not m.get("readOnly"):
            fail(cw, f"volumeMount {m.get('name')} is not readOnly")
        sources = []
        if "projected" in v:
            sources = v["projected"].get("sources") or []
        elif "configMap" in v:
            sources = [{"configMap": v["configMap"]}]
        elif "secret" in v:
            sources = [{"secret": dict(v["secret"], name=v["secret"].get("secretName"))}]
        for s in sources:
            for kind in ("configMap", "secret"):
                if kind in s:
                    src = s[kind]
                    items = src.get("items")
                    if not items:
                        fail(cw, f"volume {m.get('name')}: {kind} {src.get('name')} without items: list the files it provides")
                        continue
                    for it in items:
                        full = os.path.normpath(os.path.join(m["mountPath"], it["path"]))
                        files[full] = (kind, src.get("name"), it["key"])
    args = c.get("args") or []
    cfg_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    if cfg_path is None:
        fail(cw, "args lack --config FILE")
    elif files.get(cfg_path) != ("configMap", dig(cm, "metadata", "name"), "ddlguard.yaml"):
        fail(cw, f"--config {cfg_path} is not the ConfigMap's ddlguard.yaml in a mounted volume")
    file_settings = {}
    for section in ("client_tls", "upstream_tls", "admin"):
        for key in ("cert_file", "key_file", "ca_file"):
            path = dig(cfg, section, key)
            if path:
                file_settings[f"{section}.{key}"] = path
                if path not in files:
                    fail(cm_where, f"ddlguard.yaml {section}.{key} {path} is not provided by any mounted volume")
                elif files[path][0] != "secret" and key == "key_file":
                    fail(cm_where, f"ddlguard.yaml {section}.{key} {path} comes from a {files[path][0]}, not a Secret")

    # --- Service --------------------------------------------------------
    ssel = dig(svc, "spec", "selector") or {}
    if not ssel or any(pod_labels.get(k) != v for k, v in ssel.items()):
        fail(svc_where, "selector does not select the Deployment's pods")
    sports = {p.get("name"): p for p in dig(svc, "spec", "ports") or []}
    pg = sports.get("postgres")
    if not pg or pg.get("port") != 5432 or pg.get("targetPort") not in ("postgres", listen_port):
        fail(svc_where, f"want port 5432 named postgres -> container port postgres ({listen_port}), got {pg}")
    ad = sports.get("admin")
    if not ad or ad.get("targetPort") not in ("admin", admin_port):
        fail(svc_where, f"want a port named admin -> container port admin ({admin_port}), got {ad}")

    # --- PodDisruptionBudget --------------------------------------------
    if not a.no_pdb:
        pw, pdb = by_kind["PodDisruptionBudget"][0]
        psel = dig(pdb, "spec", "selector", "matchLabels") or {}
        if psel != sel:
            fail(pw, "selector differs from the Deployment's")
        mina = dig(pdb, "spec", "minAvailable")
        if mina is None and dig(pdb, "spec", "maxUnavailable") is None:
            fail(pw, "neither minAvailable nor maxUnavailable")
        if isinstance(mina, int) and mina >= a.replicas:
            fail(pw, f"minAvailable {mina} >= replicas {a.replicas}: no pod could ever be evicted")

    # --- ServiceMonitor -------------------------------------------------
    if a.service_monitor:
        sw, sm = by_kind["ServiceMonitor"][0]
        if sm.get("apiVersion") != "monitoring.coreos.com/v1":
            fail(sw, f"apiVersion {sm.get('apiVersion')}")
        eps = dig(sm, "spec", "endpoints") or []
        if not any(e.get("port") == "admin" and e.get("path", "/metrics") == "/metrics" for e in eps):
            fail(sw, "no endpoint scraping port admin at /metrics")
        msel = dig(sm, "spec", "selector", "matchLabels") or {}
        slabels = dig(svc, "metadata", "labels") or {}
        if not msel or any(slabels.get(k) != v for k, v in msel.items()):
            fail(sw, "selector does not select the Service")
        job = slabels.get(dig(sm, "spec", "jobLabel")) if dig(sm, "spec", "jobLabel") else dig(svc, "metadata", "name")
        if not job or "ddlguard" not in job:
            fail(sw, f"job label would be {job!r}: the DDLGuardDown alert watches up{{job=~\".*ddlguard.*\"}}")

    # --- PrometheusRule -------------------------------------------------
    if a.rules:
        rw, pr = by_kind["PrometheusRule"][0]
        if pr.get("apiVersion") != "monitoring.coreos.com/v1":
            fail(rw, f"apiVersion {pr.get('apiVersion')}")
        want_groups = yaml.safe_load(open(a.rules))["groups"]
        got_groups = dig(pr, "spec", "groups")
        if got_groups != want_groups:
            fail(rw, f"spec.groups differ from {a.rules}")
        want_alerts = {r["alert"] for g in want_groups for r in g["rules"] if "alert" in r}
        got_alerts = {r.get("alert") for g in got_groups or [] for r in g.get("rules", []) if "alert" in r}
        if not want_alerts or want_alerts - got_alerts:
            fail(rw, f"alerts missing: {sorted(want_alerts - got_alerts)}")
        elif "DDLGuardDown" not in got_alerts:
            fail(rw, "no DDLGuardDown alert")

    if a.ddlguard and not problems:
        check_config(a.ddlguard, cm_where, raw, files, by_kind["ConfigMap"][0][1], file_settings, env)
    return report()


def check_config(binary, where, raw, files, cm, file_settings, env):
    """Lay out the pod's /etc/ddlguard-like files in a temp dir and run
    `ddlguard check-config` on them, with the Secrets' env vars set to
    stand-in values."""
    tmp = tempfile.mkdtemp(prefix="ddlguard-check-")
    try:
        remap = {}
        cert_made = None
        for path, (kind, name, key) in files.items():
            local = os.path.join(tmp, path.lstrip("/"))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            remap[path] = local
            if kind == "configMap":
                if key != "ddlguard.yaml":
                    data = (cm.get("data") or {}).get(key, "")
                    open(local, "w").write(data)
                continue
            # A Secret's file: a throwaway self-signed certificate and key.
            if cert_made is None:
                cert_made = os.path.join(tmp, "stand-in")
                os.makedirs(cert_made)
                r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                    "-nodes", "-days", "1", "-subj", "/CN=ddlguard-check",
                                    "-keyout", os.path.join(cert_made, "key.pem"), "-out", os.path.join(cert_made, "cert.pem")],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    fail(where, f"openssl could not make a stand-in certificate: {r.stderr.strip()}")
                    return
            src = "key.pem" if key.endswith(".key") or key == "tls.key" else "cert.pem"
            shutil.copy(os.path.join(cert_made, src), local)
        text = raw
        for path in sorted(remap, key=len, reverse=True):
            text = text.replace(path, remap[path])
        cfg_file = next(remap[p] for p, f in files.items() if f[0] == "configMap" and f[2] == "ddlguard.yaml")
        open(cfg_file, "w").write(text)
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if "DDLGUARD_MONITOR_DSN" in env:
            run_env["DDLGUARD_MONITOR_DSN"] = "postgres://ddlguard_monitor:stand-in@127.0.0.1:1/postgres"
        if "DDLGUARD_ADMIN_TOKEN" in env:
            run_env["DDLGUARD_ADMIN_TOKEN"] = "stand-in-token-0123456789"
        r = subprocess.run([binary, "check-config", "--config", cfg_file], capture_output=True, text=True, env=run_env)
        if r.returncode != 0:
            fail(where, f"ddlguard check-config rejects ddlguard.yaml: {(r.stderr or r.stdout).strip()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report():
    for p in problems:
        print("check-manifests: FAIL: " + p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
