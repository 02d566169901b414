#!/usr/bin/env bash
# The full test suite: installs and starts what the tests need on loopback (a private
# PostgreSQL 15 + TimescaleDB cluster, scripts/timescaledb.sh), builds the project
# (shared target directory, so repeated runs are incremental), runs every test
# release-optimised (the reference, scenario and database tests replay the whole
# fixture), and stops what it started.
#
# A Kafka-protocol broker joins this script with the Kafka source (see README "Status").
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gpu-health/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: install a Rust toolchain (rustup) first" >&2
  exit 1
fi

db_dir=$(mktemp -d /tmp/gpu-health-db.XXXXXX)
cleanup() { scripts/timescaledb.sh stop "$db_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
url_line=$(scripts/timescaledb.sh start "$db_dir")
export DATABASE_URL="${url_line#DATABASE_URL=}"
echo "TimescaleDB running: $DATABASE_URL" >&2

cargo build --release --locked
cargo test --release --locked -- --test-threads 2
