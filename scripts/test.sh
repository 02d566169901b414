#!/usr/bin/env bash
# The full test suite: installs and starts what the tests need on loopback (a private
# PostgreSQL 15 + TimescaleDB cluster, scripts/timescaledb.sh, and a Tansu broker,
# scripts/kafka.sh), builds the project (shared target directory, so repeated runs are
# incremental), runs every test release-optimised (the reference, scenario, database
# and Kafka tests replay the whole fixture), and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gpu-health/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: install a Rust toolchain (rustup) first" >&2
  exit 1
fi

SCRIPT_NAME=test.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
install_build_deps

db_dir=$(mktemp -d /tmp/gpu-health-db.XXXXXX)
kafka_dir=$(mktemp -d /tmp/gpu-health-kafka.XXXXXX)
cleanup() {
  scripts/kafka.sh stop "$kafka_dir" >/dev/null 2>&1 || true
  scripts/timescaledb.sh stop "$db_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
url_line=$(scripts/timescaledb.sh start "$db_dir")
export DATABASE_URL="${url_line#DATABASE_URL=}"
echo "TimescaleDB running: $DATABASE_URL" >&2
brokers_line=$(scripts/kafka.sh start "$kafka_dir")
export KAFKA_BROKERS="${brokers_line#KAFKA_BROKERS=}"
echo "Tansu running: $KAFKA_BROKERS" >&2

cargo build --release --locked
cargo test --release --locked -- --test-threads 2
