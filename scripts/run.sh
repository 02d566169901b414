#!/usr/bin/env bash
# Runs the main job: `gpu-health run` (the embedded demo without arguments: the bundled
# fixture through the whole pipeline into Parquet, then a fleet summary). Installs what
# the build needs and a fresh machine lacks (cmake and the curl headers, for the
# bundled librdkafka), builds release-optimised into the shared target directory, and
# passes its arguments on, e.g. `scripts/run.sh --config pipelines/backfill.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT_NAME=run.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install a Rust toolchain (rustup) first"
install_build_deps
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gpu-health/target}"
exec cargo run --release --locked -- run "$@"
