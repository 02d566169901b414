#!/usr/bin/env bash
# The full test suite: builds the project (shared target directory, so repeated runs
# are incremental) and runs every test, release-optimised because the reference and
# scenario tests replay the whole fixture.
#
# Local services: the engine tests need none. TimescaleDB and a Kafka-protocol broker
# join this script with the sink and source that need them (see README "Status").
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gpu-health/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: install a Rust toolchain (rustup) first" >&2
  exit 1
fi

cargo build --release --locked
cargo test --release --locked -- --test-threads 2
