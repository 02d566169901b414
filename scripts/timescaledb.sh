#!/usr/bin/env bash
# A private PostgreSQL 15 + TimescaleDB cluster on loopback, for tests (DESIGN.md §8).
#
#   scripts/timescaledb.sh start [DIR]   install what is missing, start a cluster in DIR
#                                        (default: a new temp dir); prints one line
#                                        DATABASE_URL=postgres://postgres@127.0.0.1:<port>/gpu_health
#                                        and writes it plus PGDATA_DIR=<DIR> to <DIR>/env
#   scripts/timescaledb.sh stop DIR      stop the cluster in DIR and remove DIR
#   scripts/timescaledb.sh status DIR    say whether the cluster in DIR runs (exit 0 if so)
#   scripts/timescaledb.sh pause DIR     stop the cluster in DIR but keep it (an outage)
#   scripts/timescaledb.sh resume DIR    start a paused cluster again on the same port
#
# Installs postgresql-15, postgresql-server-dev-15, cmake and build tools with apt when
# missing. TimescaleDB (the Apache-2 part) is built from Debian's source package
# `timescaledb`, which lives in a release after bookworm: a deb-src entry for that suite
# is derived from this machine's own apt sources (same mirror) and pinned low, the
# source is fetched with `apt-get source` and built once into
# $HOME/.cache/gpu-health/timescaledb; later runs skip the build.
# The cluster: superuser `postgres`, trust auth, 127.0.0.1 only, fsync off — tests only.
#
# Environment: TIMESCALEDB_SOURCE_SUITE (default trixie) names the suite to take the
# source package from.
set -euo pipefail

SCRIPT_NAME=timescaledb.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
SOURCE_SUITE=${TIMESCALEDB_SOURCE_SUITE:-trixie}
CACHE=${HOME:-/root}/.cache/gpu-health/timescaledb
SETUP_LOG=$CACHE/setup.log
APT_SOURCES_FILE=/etc/apt/sources.list.d/gpu-health-$SOURCE_SUITE-src.sources
APT_PIN_FILE=/etc/apt/preferences.d/gpu-health-$SOURCE_SUITE
DB_NAME=gpu_health

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- installation -----------------------------------------------------------------

timescaledb_installed() {
  [ -x "$PG_CONFIG" ] || return 1
  [ -f "$("$PG_CONFIG" --pkglibdir)/timescaledb.so" ] &&
    [ -f "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control" ]
}

# The Debian mirror URI this machine uses for its own release, from apt's configuration.
debian_mirror() {
  local codename uri
  codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "cannot read VERSION_CODENAME from /etc/os-release"
  uri=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(TARGET_OF) $(SITE)' |
    awk -v c="$codename" '$1 == c && $2 == "deb" { print $3; exit }')
  [ -n "$uri" ] ||
    die "no apt source for '$codename' in /etc/apt: add the Debian archive to apt's sources first"
  printf '%s\n' "$uri"
}

# Adds a deb-src entry for $SOURCE_SUITE (pinned low so nothing is upgraded from it)
# and refreshes only that entry's index.
add_source_suite() {
  if [ ! -f "$APT_SOURCES_FILE" ]; then
    local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    mirror=$(debian_mirror)
    log "adding deb-src $SOURCE_SUITE from $mirror ($APT_SOURCES_FILE)"
    {
      echo "# Added by gpu-health scripts/timescaledb.sh: source of the timescaledb package."
      echo "Types: deb-src"
      echo "URIs: $mirror"
      echo "Suites: $SOURCE_SUITE"
      echo "Components: main"
      [ -f "$keyring" ] && echo "Signed-By: $keyring"
    } | as_root tee "$APT_SOURCES_FILE.tmp" >/dev/null
    printf '%s\n' \
      "# Added by gpu-health scripts/timescaledb.sh: never install or upgrade from $SOURCE_SUITE." \
      "Package: *" "Pin: release n=$SOURCE_SUITE" "Pin-Priority: 50" |
      as_root tee "$APT_PIN_FILE" >/dev/null
    as_root mv "$APT_SOURCES_FILE.tmp" "$APT_SOURCES_FILE"
  fi
  run_logged "$SETUP_LOG" "apt-get update ($SOURCE_SUITE sources)" \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 \
    -o Dir::Etc::SourceList="$APT_SOURCES_FILE" -o Dir::Etc::SourceParts=- \
    -o APT::Get::List-Cleanup=0 update
}

# Prints the unpacked source directory, fetching it with `apt-get source` when the
# cache has none.
timescaledb_source() {
  local dir
  dir=$(find "$CACHE/src" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] || [ ! -f "$dir/CMakeLists.txt" ]; then
    add_source_suite
    rm -rf "$CACHE/src.tmp" && mkdir -p "$CACHE/src.tmp"
    log "fetching the timescaledb source package from $SOURCE_SUITE"
    # apt runs downloads as user _apt, which must be able to write there.
    chmod 755 "$CACHE/src.tmp"
    run_logged "$SETUP_LOG" "apt-get source timescaledb" \
      bash -c "cd '$CACHE/src.tmp' && apt-get -q source timescaledb/$SOURCE_SUITE"
    rm -rf "$CACHE/src" && mv "$CACHE/src.tmp" "$CACHE/src"
    dir=$(find "$CACHE/src" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -f "$dir/CMakeLists.txt" ] ||
      die "apt-get source timescaledb gave no source tree in $CACHE/src (see $SETUP_LOG)"
  fi
  printf '%s\n' "$dir"
}

install_timescaledb() {
  mkdir -p "$CACHE"
  apt_install "$SETUP_LOG" postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR \
    postgresql-server-dev-$PG_MAJOR cmake build-essential dpkg-dev libssl-dev
  timescaledb_installed && return 0

  local src build
  src=$(timescaledb_source)
  build=$CACHE/build-$(basename "$src")-pg$PG_MAJOR
  if [ ! -f "$build/.built" ]; then
    log "building $(basename "$src") for PostgreSQL $PG_MAJOR (log: $SETUP_LOG)"
    rm -rf "$build"
    run_logged "$SETUP_LOG" "cmake configure" \
      cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
      -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF
    run_logged "$SETUP_LOG" "cmake build" \
      nice -n 10 cmake --build "$build" -j "$(nproc)"
    touch "$build/.built"
  fi
  run_logged "$SETUP_LOG" "make install" as_root cmake --install "$build"
  timescaledb_installed || die "timescaledb is still not installed after the build (see $SETUP_LOG)"
}

# --- the cluster ------------------------------------------------------------------

# as_pg CMD...: run CMD as the postgres user (PostgreSQL refuses to run as root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cluster_running() {
  [ -f "$1/data/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" status -D "$1/data" >/dev/null 2>&1
}

psql_at() { # PORT DB SQL
  psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

cmd_start() {
  local dir=${1:-}
  install_timescaledb

  if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/gpu-health-pg.XXXXXX")
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ ! -f "$dir/data/PG_VERSION" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir is neither empty nor a cluster made by this script: pass a new or empty DIR"
  fi
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
    runuser -u postgres -- test -w "$dir" ||
      die "user postgres cannot write to $dir: pick a DIR under /tmp (or one postgres can reach)"
  fi
  local log=$dir/setup.log

  if cluster_running "$dir" && [ -f "$dir/env" ]; then
    grep '^DATABASE_URL=' "$dir/env"
    return 0
  fi

  if [ ! -f "$dir/data/PG_VERSION" ]; then
    run_logged "$log" initdb as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres \
      --auth=trust --encoding=UTF8 --locale=C
    echo "include 'gpu_health.conf'" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  # TLS as a real server offers it: a self-signed certificate for 127.0.0.1 (the TLS
  # tests verify against it; plain connections still work).
  if [ ! -f "$dir/data/server.crt" ]; then
    command -v openssl >/dev/null 2>&1 || apt_install "$log" openssl
    run_logged "$log" "server certificate" as_pg openssl req -x509 -newkey rsa:2048 -nodes \
      -days 30 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
      -keyout "$dir/data/server.key" -out "$dir/data/server.crt"
    as_pg chmod 600 "$dir/data/server.key"
  fi

  # Pick a port by binding; retry if another process takes it before postgres does.
  local port attempt started=
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    as_pg tee "$dir/data/gpu_health.conf" >/dev/null <<EOF
# Written by scripts/timescaledb.sh: a throwaway test cluster.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
ssl = on
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if as_pg "$PG_BIN/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 >>"$log" 2>&1; then
      started=yes
      break
    fi
    grep -q 'could not bind\|Address already in use' "$dir/postgres.log" 2>/dev/null || break
    log "port $port was taken meanwhile (attempt $attempt), trying another"
  done
  if [ -z "$started" ]; then
    log "error: PostgreSQL did not start; last lines of $dir/postgres.log:"
    tail -n 20 "$dir/postgres.log" 2>/dev/null | sed 's/^/    /' >&2
    die "fix the cause above, then run: $0 stop $dir"
  fi

  local i
  for i in $(seq 1 60); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
    sleep 0.5
  done
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres ||
    die "PostgreSQL on 127.0.0.1:$port is not ready (see $dir/postgres.log)"

  if [ -z "$(psql_at "$port" postgres "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    run_logged "$log" "CREATE DATABASE" psql_at "$port" postgres "CREATE DATABASE $DB_NAME"
  fi
  run_logged "$log" "CREATE EXTENSION" psql_at "$port" "$DB_NAME" \
    "CREATE EXTENSION IF NOT EXISTS timescaledb"

  local url="postgres://postgres@127.0.0.1:$port/$DB_NAME"
  printf 'DATABASE_URL=%s\nPGDATA_DIR=%s\n' "$url" "$dir" >"$dir/env"
  printf 'DATABASE_URL=%s\n' "$url"
}

# Refuses to touch a directory this script did not set up.
check_cluster_dir() {
  [ -n "${1:-}" ] || usage
  [ -d "$1" ] || die "$1 does not exist"
  [ -f "$1/env" ] || [ -f "$1/data/PG_VERSION" ] ||
    die "$1 does not hold a cluster started by $0 (no env or data/PG_VERSION)"
}

cmd_stop() {
  check_cluster_dir "${1:-}"
  local dir=$1
  if cluster_running "$dir"; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 >/dev/null 2>&1 ||
      die "pg_ctl stop failed for $dir/data: see $dir/postgres.log, then kill the postmaster in $dir/data/postmaster.pid"
  fi
  rm -rf "$dir"
}

cmd_status() {
  check_cluster_dir "${1:-}"
  if cluster_running "$1"; then
    echo "running: $(grep '^DATABASE_URL=' "$1/env" 2>/dev/null || echo "$1/data")"
  else
    echo "stopped: $1"
    return 3
  fi
}

# An outage for tests: the server goes away (clients are disconnected), data stays.
cmd_pause() {
  check_cluster_dir "${1:-}"
  if cluster_running "$1"; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$1/data" -m fast -w -t 60 >/dev/null 2>&1 ||
      die "pg_ctl stop failed for $1/data: see $1/postgres.log"
  fi
}

# Ends an outage: same data, same port (gpu_health.conf is kept), so URLs stay valid.
cmd_resume() {
  check_cluster_dir "${1:-}"
  cluster_running "$1" && return 0
  as_pg "$PG_BIN/pg_ctl" start -D "$1/data" -l "$1/postgres.log" -w -t 60 >/dev/null 2>&1 ||
    die "pg_ctl start failed for $1/data: see $1/postgres.log"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  pause) shift; cmd_pause "$@" ;;
  resume) shift; cmd_resume "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
