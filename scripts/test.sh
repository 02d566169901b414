#!/usr/bin/env bash
# The full test suite: installs and starts what the tests need on loopback (a private
# PostgreSQL 15 + TimescaleDB cluster, scripts/timescaledb.sh, and a Tansu broker,
# scripts/kafka.sh), checks formatting and clippy (warnings are errors), builds the
# project (shared target directory, so repeated runs are incremental), runs every test
# release-optimised (the reference, scenario, database and Kafka tests replay the whole
# fixture) with the services required, and stops what it started.
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

# Style first: formatting and every clippy lint, warnings as errors.
cargo fmt --check
cargo clippy --release --locked --all-targets -- -D warnings

cargo build --release --locked
# A test whose service is missing fails here instead of skipping (tests/common).
export GPU_HEALTH_TEST_SERVICES=required
cargo test --release --locked -- --test-threads 2

# What an operator sees: the deployment files validate, the report of the demo run
# prints, and the HTML report renders in headless Chromium (Debian's chromium,
# installed when missing); the screenshot is kept as out/report.png.
scripts/compose_check.sh
bin="$CARGO_TARGET_DIR/release/gpu-health"
demo_dir=$(mktemp -d /tmp/gpu-health-demo.XXXXXX)
GPU_HEALTH_SINK__PATH="$demo_dir" "$bin" run >"$demo_dir/summary.txt"
"$bin" report --parquet "$demo_dir" fleet | tee "$demo_dir/fleet.txt"
grep -q "excellent" "$demo_dir/fleet.txt" || { echo "report fleet printed no grades" >&2; exit 1; }
"$bin" report --parquet "$demo_dir" html --out "$demo_dir/report.html"
mkdir -p out
scripts/render_check.sh "$demo_dir/report.html" out/report.png 4
rm -rf "$demo_dir"
