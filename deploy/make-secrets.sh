#!/usr/bin/env bash
# Creates the secret files docker-compose.yml reads (deploy/secrets/README.md):
#
#   deploy/make-secrets.sh [DIR]     DIR: default $GPU_HEALTH_SECRETS_DIR, else deploy/secrets
#
# A password file that exists is kept; a missing one gets 24 random bytes, hex-encoded.
# The two database URL files are always rewritten from the password files, so after
# changing a password file run this again. Written without a trailing newline, mode 0644
# (the containers read them as their own non-root users), in a directory of mode 0700.
#
# Environment (must match what docker-compose.yml is given): GPU_HEALTH_WRITER_LOGIN
# (default gpu_health_processor), GPU_HEALTH_DB_HOST (default timescaledb:5432).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${GPU_HEALTH_SECRETS_DIR:-$here/secrets}}
writer_login=${GPU_HEALTH_WRITER_LOGIN:-gpu_health_processor}
db_host=${GPU_HEALTH_DB_HOST:-timescaledb:5432}
db_name=gpu_health

log() { printf 'make-secrets.sh: %s\n' "$*" >&2; }

random_secret() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 24 | tr -d '\n'
  else
    od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
  fi
}

# Percent-encodes a URL userinfo component (RFC 3986 unreserved characters pass).
urlencode() {
  local s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

read_secret() { tr -d '\r\n' <"$1"; }

umask 022
mkdir -p "$dir"
chmod 700 "$dir"

for name in postgres_password writer_password reader_password grafana_admin_password; do
  f=$dir/$name.txt
  if [ -s "$f" ]; then
    log "keeping $f"
  else
    random_secret >"$f"
    log "created $f"
  fi
  chmod 644 "$f"
done

# Passwords are hex by default; a hand-written one with non-ASCII bytes is encoded per byte.
export LC_ALL=C
printf 'postgres://postgres:%s@%s/%s' \
  "$(urlencode "$(read_secret "$dir/postgres_password.txt")")" "$db_host" "$db_name" \
  >"$dir/owner_database_url.txt"
printf 'postgres://%s:%s@%s/%s' \
  "$(urlencode "$writer_login")" "$(urlencode "$(read_secret "$dir/writer_password.txt")")" \
  "$db_host" "$db_name" >"$dir/writer_database_url.txt"
chmod 644 "$dir/owner_database_url.txt" "$dir/writer_database_url.txt"
log "wrote $dir/owner_database_url.txt and $dir/writer_database_url.txt"
