#!/usr/bin/env bash
# A Kafka-protocol broker on loopback, for tests (DESIGN.md §8): Tansu with in-memory
# storage.
#
#   scripts/kafka.sh start [DIR]   install Tansu if missing, start a broker in DIR
#                                  (default: a new temp dir); prints one line
#                                  KAFKA_BROKERS=127.0.0.1:<port>
#                                  and writes it to <DIR>/env
#   scripts/kafka.sh stop DIR      stop the broker in DIR and remove DIR
#   scripts/kafka.sh status DIR    say whether the broker in DIR runs (exit 0 if so)
#
# Tansu is built once with `cargo install --locked tansu --features dynostore` into
# $HOME/.cache/gpu-health/tansu (a few minutes on 2 cores); later runs reuse it.
# Its memory storage loses everything when it stops: tests create their topics.
set -euo pipefail

SCRIPT_NAME=kafka.sh
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0
TANSU_ROOT=$HOME/.cache/gpu-health/tansu
TANSU=$TANSU_ROOT/bin/tansu

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

install_tansu() {
  if [ -x "$TANSU" ] && "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return 0
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo is needed to build Tansu: install a Rust toolchain"
  mkdir -p "$TANSU_ROOT"
  log "building Tansu $TANSU_VERSION into $TANSU_ROOT (once; log: $TANSU_ROOT/install.log)"
  run_logged "$TANSU_ROOT/install.log" "cargo install tansu" \
    cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore \
    --root "$TANSU_ROOT"
}

broker_running() {
  [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null
}

cmd_start() {
  local dir=${1:-}
  [ -n "$dir" ] || dir=$(mktemp -d /tmp/gpu-health-kafka.XXXXXX)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if broker_running "$dir" && [ -f "$dir/env" ]; then
    cat "$dir/env"
    return 0
  fi
  install_tansu

  local port attempt i
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    # Started from DIR, so that no stray .env file is read; stdin closed, own session.
    (
      cd "$dir" || exit 1
      RUST_LOG=${TANSU_LOG:-warn} setsid "$TANSU" broker \
        --cluster-id gpu-health-test \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ \
        </dev/null >"$dir/broker.log" 2>&1 &
      echo $! >"$dir/pid"
    )
    for i in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        printf 'KAFKA_BROKERS=127.0.0.1:%s\n' "$port" | tee "$dir/env"
        return 0
      fi
      broker_running "$dir" || break
      sleep 0.1
    done
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    log "broker did not come up on port $port (attempt $attempt); last lines of $dir/broker.log:"
    tail -n 5 "$dir/broker.log" | sed 's/^/    /' >&2
  done
  die "Tansu did not start (see $dir/broker.log)"
}

cmd_stop() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  [ -d "$dir" ] || die "$dir does not exist"
  [ -f "$dir/pid" ] || [ -f "$dir/env" ] || die "$dir does not hold a broker started by $0"
  if broker_running "$dir"; then
    local pid
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

cmd_status() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  if broker_running "$dir"; then
    echo "running: $(cat "$dir/env" 2>/dev/null)"
  else
    echo "stopped: $dir"
    return 3
  fi
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
