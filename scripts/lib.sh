# Shared helpers for the scripts in this directory (sourced, not run).
#
# Conventions: every message goes to stderr, so a script's stdout carries only its
# result; noisy steps write to a log file that is shown only when they fail.

log() { printf '%s: %s\n' "${SCRIPT_NAME:-gpu-health}" "$*" >&2; }

die() {
  printf '%s: error: %s\n' "${SCRIPT_NAME:-gpu-health}" "$*" >&2
  exit 1
}

# run_logged LOGFILE DESCRIPTION CMD...: run CMD with its output appended to LOGFILE;
# on failure print the log's tail and exit.
run_logged() {
  local logfile=$1 what=$2
  shift 2
  printf '\n=== %s: %s\n' "$what" "$*" >>"$logfile"
  if ! "$@" >>"$logfile" 2>&1; then
    printf '%s: error: %s failed; last lines of %s:\n' "${SCRIPT_NAME:-gpu-health}" "$what" "$logfile" >&2
    tail -n 40 "$logfile" | sed 's/^/    /' >&2
    exit 1
  fi
}

# as_root CMD...: run CMD as root (directly, or through sudo when not root).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" || die "'$*' needs root: run this script as root or allow passwordless sudo"
  else
    die "'$*' needs root: run this script as root (sudo is not installed)"
  fi
}

# missing_packages PKG...: print those of PKG that dpkg does not list as installed.
missing_packages() {
  local p
  for p in "$@"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
      printf '%s\n' "$p"
    fi
  done
}

# apt_install LOGFILE PKG...: install those of PKG that are missing; runs
# `apt-get update` only when something is missing.
apt_install() {
  local logfile=$1
  shift
  local missing
  missing=$(missing_packages "$@" | tr '\n' ' ')
  [ -n "${missing// /}" ] || return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "missing packages ($missing) and no apt-get: install them by hand"
  log "installing $missing(log: $logfile)"
  run_logged "$logfile" "apt-get update" \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 update
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  run_logged "$logfile" "apt-get install" \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 \
    install --no-install-recommends $missing
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return 0
    fi
  done
  # No python: pick random high ports until one is not in the listening set.
  local port i
  for i in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! ss -Htln 2>/dev/null | awk '{print $4}' | grep -q ":$port\$"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  die "could not find a free TCP port on 127.0.0.1"
}

# install_build_deps: what building gpu-health needs beyond a Rust toolchain and gcc:
# cmake (rdkafka-sys builds its bundled librdkafka with it) and the curl headers
# (librdkafka 2.12 includes curl/curl.h even when built without curl), and OpenSSL
# (libssl-dev, found with pkg-config) for TLS to PostgreSQL and Kafka.
install_build_deps() {
  apt_install "${TMPDIR:-/tmp}/gpu-health-setup.log" cmake libcurl4-openssl-dev libssl-dev pkg-config
}
