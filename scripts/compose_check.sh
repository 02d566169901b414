#!/usr/bin/env bash
# Validates the deployment files without a Docker engine:
#
#   scripts/compose_check.sh
#
# 1. docker-compose.yml with `docker compose config` (the v2 plugin) when it exists, else
#    with `docker-compose config` (v1.29, Debian's package `docker-compose`, installed
#    with apt when missing). The compose file reads its secrets from
#    $GPU_HEALTH_SECRETS_DIR (default deploy/secrets); this check points that at a
#    temporary directory of throwaway secrets made by deploy/make-secrets.sh, so it runs
#    the same on a fresh clone and never reads real secrets. It also checks what
#    `config` does not: every published port is bound to 127.0.0.1, every bind-mounted
#    file or directory exists, every secret a service names is defined.
# 2. The JSON files (Grafana dashboards, the Kafka Connect config) parse, and each
#    dashboard has a unique uid and uses only the provisioned datasources.
# 3. The Grafana and Prometheus YAML files parse (PyYAML; skipped, with a note, when no
#    python3 has it) and the deploy shell scripts pass `sh -n` / `bash -n`.
#
# Exits non-zero on the first invalid file.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT_NAME=compose_check.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

COMPOSE_FILE=docker-compose.yml
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gpu-health-compose-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# --- the compose tool ----------------------------------------------------------------
compose=()
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  log "neither 'docker compose' nor 'docker-compose' found: installing docker-compose with apt"
  apt_install "$TMP/apt.log" docker-compose
  command -v docker-compose >/dev/null 2>&1 || die "docker-compose is still missing after apt-get install"
  compose=(docker-compose)
fi
log "using: ${compose[*]} ($("${compose[@]}" version 2>/dev/null | head -n 1))"

# A python3 with PyYAML: the one on PATH, else Debian's (docker-compose depends on
# python3-yaml there).
PY=
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' >/dev/null 2>&1; then
    PY=$py
    break
  fi
done
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the JSON checks"

# --- 1. docker-compose.yml -----------------------------------------------------------
export GPU_HEALTH_SECRETS_DIR="$TMP/secrets"
deploy/make-secrets.sh "$GPU_HEALTH_SECRETS_DIR" 2>/dev/null

# Every profile, so that profile-only services (replay) are checked too.
export COMPOSE_PROFILES=demo
if ! "${compose[@]}" -f "$COMPOSE_FILE" config -q; then
  die "$COMPOSE_FILE is invalid (${compose[*]} config)"
fi
"${compose[@]}" -f "$COMPOSE_FILE" config >"$TMP/resolved.yml" 2>"$TMP/config.err" ||
  die "$COMPOSE_FILE: ${compose[*]} config failed: $(cat "$TMP/config.err")"
log "ok: $COMPOSE_FILE (${compose[*]} config)"

if [ -n "$PY" ]; then
  "$PY" - "$TMP/resolved.yml" <<'EOF' || die "$COMPOSE_FILE: checks of the resolved file failed"
import os, sys, yaml

cfg = yaml.safe_load(open(sys.argv[1]))
services = cfg.get("services") or {}
secrets = set((cfg.get("secrets") or {}).keys())
errors = []
for name, svc in sorted(services.items()):
    for port in svc.get("ports") or []:
        # v1 prints "127.0.0.1:9464:9464/tcp", v2 the long form with host_ip.
        host_ip = port.get("host_ip") if isinstance(port, dict) else (
            str(port).split(":")[0] if str(port).count(":") == 2 else None)
        if host_ip != "127.0.0.1":
            errors.append(f"{name}: port {port} is not bound to 127.0.0.1")
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            kind, source = vol.get("type"), vol.get("source")
        else:
            source = str(vol).split(":")[0]
            kind = "bind" if source.startswith(("/", ".")) else "volume"
        if kind == "bind" and not os.path.exists(source):
            errors.append(f"{name}: bind mount source {source} does not exist")
    for s in svc.get("secrets") or []:
        s = s.get("source") if isinstance(s, dict) else s
        if s not in secrets:
            errors.append(f"{name}: secret {s} is not defined")
for s, spec in sorted((cfg.get("secrets") or {}).items()):
    if not os.path.isfile(spec.get("file", "")):
        errors.append(f"secret {s}: file {spec.get('file')} missing")
need = {"kafka", "timescaledb", "migrate", "db-users", "gpu-health", "grafana", "replay"}
missing = need - set(services)
if missing:
    errors.append(f"services missing: {sorted(missing)}")
for e in errors:
    print(f"compose_check.sh: error: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"compose_check.sh: ok: {len(services)} services, ports on 127.0.0.1, "
      f"bind mounts and {len(secrets)} secrets present", file=sys.stderr)
EOF
fi

# --- 2. JSON -------------------------------------------------------------------------
json_files=(deploy/grafana/dashboards/*.json pipelines/*.json)
for f in "${json_files[@]}"; do
  python3 -m json.tool "$f" >/dev/null || die "$f is not valid JSON"
done
python3 - deploy/grafana/dashboards/*.json <<'EOF' || die "dashboard checks failed"
import json, sys

known_ds = {"gpu-health-timescaledb", "gpu-health-prometheus", "-- Grafana --"}
uids, errors = {}, []
for path in sys.argv[1:]:
    d = json.load(open(path))
    uid = d.get("uid")
    if not uid or uid in uids:
        errors.append(f"{path}: missing or duplicate uid {uid!r}")
    uids[uid] = path
    panels = []
    for p in d.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    ids = [p["id"] for p in panels]
    if len(ids) != len(set(ids)):
        errors.append(f"{path}: duplicate panel ids")
    refs = [p.get("datasource") for p in panels]
    refs += [t.get("datasource") for p in panels for t in p.get("targets", [])]
    refs += [v.get("datasource") for v in d.get("templating", {}).get("list", [])]
    for r in refs:
        if isinstance(r, dict) and r.get("uid") not in known_ds:
            errors.append(f"{path}: unknown datasource uid {r.get('uid')!r}")
    for p in panels:
        for t in p.get("targets", []):
            if "rawSql" in t and not t["rawSql"].strip():
                errors.append(f"{path}: panel {p.get('title')!r} has an empty query")
for e in errors:
    print(f"compose_check.sh: error: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
log "ok: ${#json_files[@]} JSON files (dashboards: uids, panel ids, datasource uids)"

# --- 3. YAML and scripts -------------------------------------------------------------
yaml_files=(deploy/grafana/provisioning/datasources/*.yml deploy/grafana/provisioning/dashboards/*.yml
  deploy/prometheus/prometheus.yml)
if [ -n "$PY" ]; then
  "$PY" - "${yaml_files[@]}" <<'EOF' || die "YAML checks failed"
import sys, yaml

errors = []
for path in sys.argv[1:]:
    try:
        doc = yaml.safe_load(open(path))
    except yaml.YAMLError as e:
        errors.append(f"{path}: {e}")
        continue
    if not isinstance(doc, dict):
        errors.append(f"{path}: not a mapping")
    elif "prometheus" in path:
        jobs = [j.get("job_name") for j in doc.get("scrape_configs", [])]
        if "gpu-health" not in jobs:
            errors.append(f"{path}: no gpu-health scrape job")
    elif doc.get("apiVersion") != 1:
        errors.append(f"{path}: Grafana provisioning needs apiVersion: 1")
    elif "datasources" in path:
        uids = {d.get("uid") for d in doc.get("datasources", [])}
        if not {"gpu-health-timescaledb", "gpu-health-prometheus"} <= uids:
            errors.append(f"{path}: datasource uids the dashboards use are missing")
for e in errors:
    print(f"compose_check.sh: error: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
  log "ok: ${#yaml_files[@]} YAML files"
else
  log "note: no python3 with PyYAML: the Grafana and Prometheus YAML files were not parsed"
fi

sh -n deploy/db/login-users.sh || die "deploy/db/login-users.sh: syntax error"
bash -n deploy/make-secrets.sh || die "deploy/make-secrets.sh: syntax error"
log "ok: deploy scripts (syntax)"
log "all deployment files are valid"
