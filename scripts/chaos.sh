#!/usr/bin/env bash
# Chaos test for the Kafka -> TimescaleDB processor (DESIGN.md §4), run by hand beside
# the README's test command (not part of CI). Every scenario consumes the bundled fixture
# from a Kafka topic into a fresh database and must end with the same tables as an
# uninterrupted file run of the fixture (`gpu-health run --config pipelines/backfill.toml`):
#
#   kills     SIGKILL the bounded Kafka pipeline at random moments N times (a moment is
#             chosen 0.8-4 s after "partitions assigned"), restarting it each time, then
#             let a last run finish.
#   broker    restart the broker (stop, wait, start on the same port) mid-stream. Needs a
#             broker whose data survives a restart: Tansu with its SQLite engine (feature
#             `libsql`); the in-memory Tansu of scripts/kafka.sh loses every topic. Built
#             once into $HOME/.cache/gpu-health/tansu-lite (about 12 min on 2 cores).
#   database  stop TimescaleDB for 60 s mid-stream, start it again, let the run finish;
#             prints the pipeline's peak RSS.
#
# Tables compared (as tests/kafka.rs assert_same_tables does): gpu_metrics,
# gpu_health_scores, gpu_failure_predictions, gpu_assets and gpu_metrics_dead_letters
# (without received_at, a wall-clock column) by md5 of an ordered dump; gpu_metrics_1min
# and gpu_metrics_15min by md5, or where that differs row by row to a relative 1e-9
# (partials merged in another order differ in the last bits); and the consumed offsets.
#
# Usage: scripts/chaos.sh [--only kills|broker|database[,...]] [--kills N] [--seed S]
#                         [--keep]
#   --only      run only these scenarios (default: all three)        env CHAOS_ONLY
#   --kills N   SIGKILLs in scenario kills (default 20)              env CHAOS_KILLS
#   --seed S    seed of the random moments (default: the clock)      env CHAOS_SEED
#   --keep      keep the logs and leave the database cluster running
# More environment: GPU_HEALTH_BIN (the binary; unset: `cargo build --release --locked`
# and $CARGO_TARGET_DIR/release/gpu-health, CARGO_TARGET_DIR defaulting to
# $HOME/.cache/gpu-health/target), CHAOS_DB_OUTAGE (seconds, default 60),
# CHAOS_BROKER_DOWN (seconds, default 10), CHAOS_BATCH_SIZE (default 8192),
# CHAOS_CHECKPOINT_INTERVAL (default 2s), CHAOS_RUN_TIMEOUT (seconds a run may take,
# default 900), CHAOS_TANSU_PERSISTENT (a Tansu binary with the libsql engine),
# CHAOS_DUMP (a topic dump instead of the bundled fixture, e.g. a smaller one from
# `gpu-health generate`; the reference run reads it too).
# Services: its own TimescaleDB cluster (scripts/timescaledb.sh) and in-memory Tansu
# (scripts/kafka.sh), stopped on exit. Exit status: 0 when every check passed.
set -euo pipefail
# One brace group: bash reads the whole script before it runs, so editing this file
# while a long chaos run goes on cannot change what that run executes.
{
cd "$(dirname "$0")/.."

SCRIPT_NAME=chaos.sh
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0" >&2
  exit 2
}

# --- options -------------------------------------------------------------------------

ONLY=${CHAOS_ONLY:-kills,broker,database}
KILLS=${CHAOS_KILLS:-20}
SEED=${CHAOS_SEED:-}
KEEP=${CHAOS_KEEP:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY=${2:?--only needs kills, broker or database}; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    --kills) KILLS=${2:?--kills needs a number}; shift 2 ;;
    --kills=*) KILLS=${1#--kills=}; shift ;;
    --seed) SEED=${2:?--seed needs a number}; shift 2 ;;
    --seed=*) SEED=${1#--seed=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) log "unknown argument: $1"; usage ;;
  esac
done
for s in ${ONLY//,/ }; do
  case "$s" in
    kills | broker | database) ;;
    *) die "--only: unknown scenario '$s' (kills, broker, database)" ;;
  esac
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
[[ "$KILLS" =~ ^[0-9]+$ ]] || die "--kills: expected a number, got '$KILLS'"
[ -n "$SEED" ] || SEED=$(($(date +%s) % 1000000))
[[ "$SEED" =~ ^[0-9]+$ ]] || die "--seed: expected a number, got '$SEED'"
RANDOM=$SEED

DB_OUTAGE=${CHAOS_DB_OUTAGE:-60}
BROKER_DOWN=${CHAOS_BROKER_DOWN:-10}
BATCH=${CHAOS_BATCH_SIZE:-8192}
CHECKPOINT=${CHAOS_CHECKPOINT_INTERVAL:-2s}
RUN_TIMEOUT=${CHAOS_RUN_TIMEOUT:-900}
TOPIC=gpu-metrics-chaos
DUMP=${CHAOS_DUMP:-embedded:fixture}
if [ "$DUMP" != embedded:fixture ]; then
  [ -f "$DUMP" ] || die "CHAOS_DUMP: no file $DUMP"
  DUMP=$(cd "$(dirname "$DUMP")" && pwd)/$(basename "$DUMP")
fi
TANSU_VERSION=$(sed -n 's/^TANSU_VERSION=//p' scripts/kafka.sh)
TANSU_LITE_ROOT=$HOME/.cache/gpu-health/tansu-lite
TANSU_LITE=${CHAOS_TANSU_PERSISTENT:-$TANSU_LITE_ROOT/bin/tansu}

# --- the binary ----------------------------------------------------------------------

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gpu-health/target}"
if [ -n "${GPU_HEALTH_BIN:-}" ]; then
  BIN=$GPU_HEALTH_BIN
else
  command -v cargo >/dev/null 2>&1 || die "cargo is not installed: set GPU_HEALTH_BIN or install a Rust toolchain"
  install_build_deps
  log "building gpu-health (cargo build --release --locked)"
  cargo build --release --locked
  BIN=$CARGO_TARGET_DIR/release/gpu-health
fi
[ -x "$BIN" ] || die "no gpu-health binary at $BIN"
# Only what this script sets reaches the runs: no override or URL from the caller's shell.
while read -r v; do
  unset "$v"
done < <(compgen -e | grep '^GPU_HEALTH_' || true)
unset DATABASE_URL KAFKA_BROKERS

# --- results -------------------------------------------------------------------------

RESULTS=()
FAILED=0
declare -A FAILS=()
# record SCENARIO PASS|FAIL|INFO CHECK [DETAIL]
record() {
  local line
  line=$(printf '%-9s %-4s %-26s %s' "$1" "$2" "$3" "${4:-}")
  RESULTS+=("$line")
  if [ "$2" = FAIL ]; then
    FAILED=1
    FAILS[$1]=$((${FAILS[$1]:-0} + 1))
  fi
  printf '%s\n' "$line" >&2
}

# --- services and cleanup ------------------------------------------------------------

WORK=$(mktemp -d /tmp/gpu-health-chaos.XXXXXX)
DB_DIR=$(mktemp -d /tmp/gpu-health-chaos-db.XXXXXX)
KAFKA_DIR=
LITE_DIR=
PIPE_PID=
RSS_PID=

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local rc=$?
  [ -z "$PIPE_PID" ] || { kill -KILL "$PIPE_PID" 2>/dev/null || true; }
  [ -z "$RSS_PID" ] || { kill "$RSS_PID" 2>/dev/null || true; }
  [ -z "$LITE_DIR" ] || { stop_lite_broker "$LITE_DIR"; rm -rf "$LITE_DIR"; }
  [ -z "$KAFKA_DIR" ] || scripts/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true
  if [ -n "$KEEP" ]; then
    if [ -f "$DB_DIR/env" ]; then
      scripts/timescaledb.sh resume "$DB_DIR" >/dev/null 2>&1 || true
      log "kept: the database cluster ($(grep '^DATABASE_URL=' "$DB_DIR/env")); stop it with: scripts/timescaledb.sh stop $DB_DIR"
    fi
    log "kept: logs in $WORK"
  else
    scripts/timescaledb.sh stop "$DB_DIR" >/dev/null 2>&1 || rm -rf "$DB_DIR"
    if [ "$FAILED" -ne 0 ] || [ "$rc" -ne 0 ]; then
      log "logs kept in $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "binary $BIN; scenarios $ONLY; seed $SEED; logs in $WORK"
url_line=$(scripts/timescaledb.sh start "$DB_DIR")
SERVER_URL=${url_line#DATABASE_URL=}
log "TimescaleDB running: $SERVER_URL"

psql_q() { # URL SQL...: run each SQL, print unaligned tuples
  local url=$1
  shift
  local -a args=()
  local s
  for s in "$@"; do args+=(-c "$s"); done
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -A -t -v ON_ERROR_STOP=1 "$url" "${args[@]}"
}

db_url() { printf '%s/%s\n' "${SERVER_URL%/*}" "$1"; }

fresh_db() { # NAME: drop and create it; prints its URL
  psql_q "$SERVER_URL" "DROP DATABASE IF EXISTS $1 WITH (FORCE)" "CREATE DATABASE $1" >/dev/null
  db_url "$1"
}

consumed() { # URL: sum of the stored next offsets (0 before the first flush)
  psql_q "$1" "SELECT coalesce(sum(next_offset), 0)::bigint FROM gpu_health.consumed_offsets" 2>/dev/null || echo 0
}

# The in-memory broker of scripts/kafka.sh (MEM_BROKERS), started on first use, with
# the dump in $TOPIC.
MEM_BROKERS=
memory_broker() {
  if [ -z "$MEM_BROKERS" ]; then
    KAFKA_DIR=$(mktemp -d /tmp/gpu-health-chaos-kafka.XXXXXX)
    local line
    line=$(scripts/kafka.sh start "$KAFKA_DIR")
    MEM_BROKERS=${line#KAFKA_BROKERS=}
    log "Tansu (memory) running: $MEM_BROKERS"
    produce "$MEM_BROKERS" "$WORK/replay-memory.log"
  fi
}

# produce BROKERS LOG: the dump into $TOPIC, one record per batch (Tansu 0.6 cannot
# fetch from inside a batch: a restart must be able to seek to any offset).
produce() {
  log "producing $DUMP into $TOPIC on $1"
  run_logged "$2" "gpu-health replay" "$BIN" replay "$DUMP" --brokers "$1" \
    --topic "$TOPIC" --partitions 4 --batch-records 1
  local n
  n=$(sed -n 's/^produced \([0-9]*\) messages.*/\1/p' "$2" | tail -n 1)
  log "$(grep '^produced' "$2" | tail -n 1)"
  [ "$n" = "$REF_TOTAL" ] || die "produced ${n:-?} messages, the file run consumed $REF_TOTAL"
}

# --- the persistent broker (scenario broker) -----------------------------------------

lite_supported() {
  [ -x "$TANSU_LITE" ] && "$TANSU_LITE" --help 2>&1 | grep -q '^Storage engines:.*libsql'
}

install_tansu_lite() {
  if lite_supported && "$TANSU_LITE" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return 0
  fi
  [ -z "${CHAOS_TANSU_PERSISTENT:-}" ] ||
    die "CHAOS_TANSU_PERSISTENT=$TANSU_LITE is not a Tansu $TANSU_VERSION with the libsql engine"
  command -v cargo >/dev/null 2>&1 || die "cargo is needed to build Tansu: install a Rust toolchain"
  install_build_deps # cmake and a C compiler: libsql-ffi builds its bundled SQLite
  mkdir -p "$TANSU_LITE_ROOT"
  log "building Tansu $TANSU_VERSION with the SQLite engine into $TANSU_LITE_ROOT (once, ~12 min; log: $TANSU_LITE_ROOT/install.log)"
  run_logged "$TANSU_LITE_ROOT/install.log" "cargo install tansu (libsql)" \
    cargo install --locked tansu --version "$TANSU_VERSION" --features libsql \
    --root "$TANSU_LITE_ROOT"
  lite_supported || die "$TANSU_LITE lists no libsql storage engine (see $TANSU_LITE_ROOT/install.log)"
}

# start_lite_broker DIR PORT: Tansu storing in DIR/tansu.db (SQLite), on 127.0.0.1:PORT.
start_lite_broker() {
  local dir=$1 port=$2 i
  (
    cd "$dir" || exit 1
    RUST_LOG=${TANSU_LOG:-warn} setsid "$TANSU_LITE" broker \
      --cluster-id gpu-health-chaos \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine sqlite://tansu.db \
      </dev/null >>"$dir/broker.log" 2>&1 &
    echo $! >"$dir/pid"
  )
  for i in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

stop_lite_broker() {
  local dir=$1 pid i
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

# --- pipeline runs -------------------------------------------------------------------

# write_config FILE BROKERS GROUP: a bounded Kafka source into TimescaleDB; [window],
# [validation] and [health] as pipelines/backfill.toml has them (defaults included).
# No [metrics]: nothing listens, so runs never clash on a port.
write_config() {
  cat >"$1" <<EOF
name = "$3"

[source]
kind = "kafka"
brokers = "$2"
topic = "$TOPIC"
group = "$3"
bounded = true
end_linger = "2s"

[source.properties]
# A restarted member waits for the killed one to be dropped: 6 s, not 45.
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[sink]
kind = "timescale"
consumer_group = "$3"
apply_schema = true
refresh_interval = "60s"
retention_interval = "1h"
max_backoff = "5s"

[window]
allowed_lateness = "60s"
late_horizon = "10m"

[health]
sample_interval = "10s"

[engine]
batch_size = $BATCH
checkpoint_interval = "$CHECKPOINT"
EOF
}

# start_pipeline CONFIG URL LOG [TIMEFILE]: `gpu-health run` in the background (PIPE_PID),
# logging into LOG, its summary into LOG's .out; under /usr/bin/time -v with TIMEFILE.
start_pipeline() {
  local cfg=$1 url=$2 log=$3 timefile=${4:-}
  local -a cmd=("$BIN" run --config "$cfg")
  [ -z "$timefile" ] || cmd=(/usr/bin/time -v -o "$timefile" "${cmd[@]}")
  GPU_HEALTH_DATABASE_URL=$url GPU_HEALTH_LOG="gpu_health=info,gpu_health::pipeline=debug" \
    NO_COLOR=1 "${cmd[@]}" >"${log%.log}.out" 2>"$log" </dev/null &
  PIPE_PID=$!
}

# reap: wait for PIPE_PID; sets STATUS to its exit status.
reap() {
  STATUS=0
  wait "$PIPE_PID" 2>/dev/null || STATUS=$? # no "Killed" job notice
  PIPE_PID=
}

# wait_for_line LOG TEXT SECONDS: 0 once LOG has TEXT, 1 at the timeout, 2 if PIPE_PID
# ended first.
wait_for_line() {
  local deadline=$((SECONDS + $3))
  while ! grep -q "$2" "$1" 2>/dev/null; do
    kill -0 "$PIPE_PID" 2>/dev/null || { grep -q "$2" "$1" 2>/dev/null && return 0; return 2; }
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# wait_exit SECONDS: waits for PIPE_PID to end (STATUS); SIGKILLs it at the timeout
# (STATUS 124).
wait_exit() {
  local deadline=$((SECONDS + $1))
  while kill -0 "$PIPE_PID" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -KILL "$PIPE_PID" 2>/dev/null || true
      reap
      STATUS=124
      return
    fi
    sleep 0.2
  done
  reap
}

# wait_consumed URL N SECONDS: 0 once N offsets are stored, 1 at the timeout, 2 if
# PIPE_PID ended first.
wait_consumed() {
  local deadline=$((SECONDS + $3))
  while [ "$(consumed "$1")" -lt "$2" ]; do
    kill -0 "$PIPE_PID" 2>/dev/null || return 2
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# --- comparison ----------------------------------------------------------------------

# table|order|row expression (tests/common/db.rs CHECKSUM_TABLES and checksums()).
TABLES=(
  'gpu_metrics|time, gpu_uuid|x.*'
  'gpu_metrics_1min|time, gpu_uuid|x.*'
  'gpu_metrics_15min|time, gpu_uuid|x.*'
  'gpu_health_scores|time, gpu_uuid|x.*'
  'gpu_failure_predictions|time, gpu_uuid, model_name|x.*'
  'gpu_assets|gpu_uuid|x.*'
  'gpu_metrics_dead_letters|topic, partition, "offset", reason|reason, detail, topic, partition, "offset", key, value, gpu_uuid, time'
)

checksum() { # URL TABLE ORDER EXPR: "<rows> <md5>"
  psql_q "$1" "SELECT count(*) || ' ' || md5(coalesce(string_agg(($4)::text, '|' ORDER BY $3), '')) FROM $2 x"
}

# diff_rows URL TABLE KEY TOLERANCE: the reference's rows copied beside the run's and
# joined on KEY (the primary key); prints "<only in run> <only in reference> <differing>
# <first keys>". Floating-point columns equal to a relative TOLERANCE (0: exactly),
# received_at left out.
diff_rows() {
  local url=$1 table=$2 key=$3 tol=$4 same on=() k=() cols=() c
  same=$(psql_q "$url" "SELECT string_agg(CASE
      WHEN data_type IN ('double precision', 'real') AND $tol > 0 THEN format(
        '(a.%1\$I IS NOT DISTINCT FROM b.%1\$I OR abs(a.%1\$I - b.%1\$I) <= %2\$s * greatest(abs(a.%1\$I), abs(b.%1\$I), 1))',
        column_name, '$tol')
      ELSE format('a.%1\$I IS NOT DISTINCT FROM b.%1\$I', column_name) END, ' AND ' ORDER BY ordinal_position)
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = '$table' AND column_name <> 'received_at'")
  IFS=, read -r -a cols <<<"$key"
  for c in "${cols[@]}"; do
    c=${c// /}
    on+=("a.$c = b.$c")
    k+=("coalesce(a.$c, b.$c)")
  done
  local on_sql k_sql
  on_sql=$(printf ' AND %s' "${on[@]}")
  k_sql=$(printf ', %s' "${k[@]}")
  local query="SELECT count(*) FILTER (WHERE b IS NULL) || ' ' || count(*) FILTER (WHERE a IS NULL) || ' '
      || count(*) FILTER (WHERE NOT (a IS NULL) AND NOT (b IS NULL)) || ' '
      || coalesce(string_agg(k, '; ') FILTER (WHERE n <= 3), '')
    FROM (SELECT a, b, row(${k_sql#, })::text AS k, row_number() OVER (ORDER BY ${k_sql#, }) AS n
            FROM $table a FULL JOIN chaos_ref b ON ${on_sql# AND }
           WHERE a IS NULL OR b IS NULL OR NOT ($same)) d"
  psql_q "$REF_URL" "COPY (SELECT * FROM $table) TO STDOUT" |
    psql_q "$url" "CREATE TEMP TABLE chaos_ref (LIKE $table)" "COPY chaos_ref FROM STDIN" "$query"
}

OFFSETS_SQL="SELECT coalesce(md5(string_agg(topic || '/' || partition || '=' || next_offset, ',' ORDER BY topic, partition)), '')
               FROM gpu_health.consumed_offsets"

# compare SCENARIO URL: every table of the run at URL against the reference's.
compare() {
  local scenario=$1 url=$2 spec table order expr got want diff only_run only_ref differ first
  for spec in "${TABLES[@]}"; do
    IFS='|' read -r table order expr <<<"$spec"
    got=$(checksum "$url" "$table" "$order" "$expr")
    want=$(checksum "$REF_URL" "$table" "$order" "$expr")
    if [ "$got" = "$want" ]; then
      record "$scenario" PASS "$table" "${got%% *} rows, md5 ${got#* }"
      continue
    fi
    local tol=0
    [[ "$table" != gpu_metrics_1* ]] || tol=1e-9
    diff=$(diff_rows "$url" "$table" "$order" "$tol") || diff="? ? ? (the row comparison failed)"
    read -r only_run only_ref differ first <<<"$diff"
    if [ "$tol" != 0 ] && [ "$only_run" = 0 ] && [ "$only_ref" = 0 ] && [ "$differ" = 0 ]; then
      record "$scenario" PASS "$table" "${got%% *} rows, equal to $tol (md5 differs: float merge order)"
    else
      # Exact tables must match to the byte, as the Rust tests assert; the row counts
      # only say where to look.
      record "$scenario" FAIL "$table" "run ${got%% *} rows, reference ${want%% *}; only in run $only_run, only in reference $only_ref, differing $differ; first: $first"
    fi
  done
  got=$(psql_q "$url" "$OFFSETS_SQL")
  want=$(psql_q "$REF_URL" "$OFFSETS_SQL")
  local n
  n=$(consumed "$url")
  if [ "$got" = "$want" ] && [ "$n" = "$REF_TOTAL" ]; then
    record "$scenario" PASS consumed_offsets "$n messages"
  else
    record "$scenario" FAIL consumed_offsets "$n of $REF_TOTAL messages; per partition: $(psql_q "$url" "SELECT string_agg(partition || '=' || next_offset, ' ' ORDER BY partition) FROM gpu_health.consumed_offsets")"
  fi
}

# --- reference -----------------------------------------------------------------------

REF_URL=$(fresh_db chaos_reference)
log "reference: $DUMP from the file into chaos_reference (pipelines/backfill.toml)"
ref_started=$SECONDS
if ! GPU_HEALTH_DATABASE_URL=$REF_URL GPU_HEALTH_SOURCE__PATH=$DUMP GPU_HEALTH_SOURCE__TOPIC=$TOPIC \
  GPU_HEALTH_METRICS__LISTEN="127.0.0.1:$(free_port)" GPU_HEALTH_LOG=gpu_health=info NO_COLOR=1 \
  "$BIN" run --config pipelines/backfill.toml >"$WORK/reference.out" 2>"$WORK/reference.log" </dev/null; then
  tail -n 20 "$WORK/reference.log" | sed 's/^/    /' >&2
  die "the reference run failed (see $WORK/reference.log)"
fi
REF_TOTAL=$(consumed "$REF_URL")
[ "$REF_TOTAL" -gt 0 ] || die "the reference run stored no offsets (see $WORK/reference.log)"
log "reference: $REF_TOTAL messages in $((SECONDS - ref_started)) s"
# "Mid-stream": once four flushes are stored, or a tenth of a small dump.
MID=$((4 * BATCH))
[ "$MID" -le $((REF_TOTAL / 10)) ] || MID=$((REF_TOTAL / 10 + 1))

# --- scenario kills ------------------------------------------------------------------

scenario_kills() {
  memory_broker
  local url group=chaos-kills-$$ logs=$WORK/kills
  mkdir -p "$logs"
  url=$(fresh_db chaos_kills)
  write_config "$WORK/kills.toml" "$MEM_BROKERS" "$group"
  log "kills: $KILLS SIGKILLs, seed $SEED (logs: $logs)"
  local kills=0 runs=0 ended=0 max_runs=$((KILLS * 3 + 20)) ms=0 broke=
  while [ "$kills" -lt "$KILLS" ] && [ "$runs" -lt "$max_runs" ]; do
    runs=$((runs + 1))
    local runlog=$logs/run-$runs.log rc=0
    start_pipeline "$WORK/kills.toml" "$url" "$runlog"
    # A restart waits for the group to drop the killed member (session timeout) before
    # it is assigned; the moment counts from the assignment.
    wait_for_line "$runlog" "partitions assigned" 90 || rc=$?
    if [ "$rc" -eq 1 ]; then
      kill -KILL "$PIPE_PID" 2>/dev/null || true
      reap
      record kills FAIL "run $runs" "no 'partitions assigned' within 90 s; see $runlog"
      broke=1
      break
    fi
    if [ "$rc" -eq 0 ]; then
      ms=$((800 + RANDOM % 3200))
      sleep_ms "$ms"
      kill -KILL "$PIPE_PID" 2>/dev/null || true
    fi
    reap
    if [ "$STATUS" -eq 137 ]; then
      kills=$((kills + 1))
      log "run $runs: SIGKILL $ms ms after the assignment ($kills of $KILLS)"
    elif [ "$STATUS" -eq 0 ]; then
      # It reached the end first; later kills land in restarts that find the input
      # consumed (restore, end linger, final flush).
      ended=$((ended + 1))
      log "run $runs: finished before its kill"
    else
      record kills FAIL "run $runs" "exited with status $STATUS; see $runlog"
      broke=1
      break
    fi
  done
  if [ "$kills" -lt "$KILLS" ] && [ -z "$broke" ]; then
    record kills FAIL "kills landed" "only $kills of $KILLS in $runs runs"
  fi
  log "kills: final run"
  start_pipeline "$WORK/kills.toml" "$url" "$logs/final.log"
  wait_exit "$RUN_TIMEOUT"
  if [ "$STATUS" -eq 0 ]; then
    record kills PASS "final run" "$runs runs before it, $ended of them finished before their kill"
  else
    record kills FAIL "final run" "status $STATUS (124: over ${RUN_TIMEOUT} s); see $logs/final.log"
  fi
  local restored
  restored=$(grep -l "engine state restored from checkpoints" "$logs"/*.log 2>/dev/null | wc -l)
  record kills INFO "restored from checkpoints" "$restored of $((runs + 1)) runs"
  compare kills "$url"
  local verdict=PASS
  [ "${FAILS[kills]:-0}" -eq 0 ] || verdict=FAIL
  record kills "$verdict" "kills survived" "$kills of $KILLS, seed $SEED"
}

# --- scenario broker -----------------------------------------------------------------

scenario_broker() {
  install_tansu_lite
  LITE_DIR=$(mktemp -d /tmp/gpu-health-chaos-tansu.XXXXXX)
  local port brokers url group=chaos-broker-$$ logs=$WORK/broker
  mkdir -p "$logs"
  port=$(free_port)
  start_lite_broker "$LITE_DIR" "$port" || die "Tansu (SQLite) did not start; see $LITE_DIR/broker.log"
  brokers=127.0.0.1:$port
  log "Tansu (SQLite, $LITE_DIR/tansu.db) running: $brokers"
  produce "$brokers" "$WORK/replay-sqlite.log"
  url=$(fresh_db chaos_broker)
  write_config "$WORK/broker.toml" "$brokers" "$group"
  start_pipeline "$WORK/broker.toml" "$url" "$logs/run.log"
  local rc=0 at
  wait_for_line "$logs/run.log" "partitions assigned" 90 || rc=$?
  [ "$rc" -ne 0 ] || wait_consumed "$url" "$MID" 300 || rc=$?
  if [ "$rc" -ne 0 ]; then
    record broker FAIL "restart mid-stream" "the run $([ "$rc" -eq 2 ] && echo ended || echo stalled) before $MID messages were stored; see $logs/run.log"
    [ -z "$PIPE_PID" ] || { kill -KILL "$PIPE_PID" 2>/dev/null || true; reap; }
    return
  fi
  at=$(consumed "$url")
  log "broker: stopping Tansu at $at of $REF_TOTAL messages stored, down for $BROKER_DOWN s"
  stop_lite_broker "$LITE_DIR"
  sleep "$BROKER_DOWN"
  local i up=
  for i in 1 2 3 4 5; do
    if start_lite_broker "$LITE_DIR" "$port"; then up=1; break; fi
    log "Tansu did not come back on port $port (attempt $i)"
    sleep 2
  done
  if [ -z "$up" ]; then
    record broker FAIL "restart mid-stream" "Tansu did not start again on port $port; see $LITE_DIR/broker.log"
  elif ! kill -0 "$PIPE_PID" 2>/dev/null; then
    record broker FAIL "restart mid-stream" "the run ended while the broker was down"
  else
    record broker PASS "restart mid-stream" "broker restarted at $at of $REF_TOTAL messages stored"
  fi
  wait_exit "$RUN_TIMEOUT"
  if [ "$STATUS" -eq 0 ]; then
    record broker PASS "run" "finished after the restart"
  else
    record broker FAIL "run" "status $STATUS (124: over ${RUN_TIMEOUT} s); see $logs/run.log"
  fi
  compare broker "$url"
}

# --- scenario database ---------------------------------------------------------------

scenario_database() {
  memory_broker
  local url group=chaos-database-$$ logs=$WORK/database timefile=
  mkdir -p "$logs"
  url=$(fresh_db chaos_database)
  write_config "$WORK/database.toml" "$MEM_BROKERS" "$group"
  [ ! -x /usr/bin/time ] || timefile=$logs/time.txt
  start_pipeline "$WORK/database.toml" "$url" "$logs/run.log" "$timefile"
  if [ -z "$timefile" ]; then
    # No /usr/bin/time: VmHWM (the peak) as last read before the process ends.
    local pid=$PIPE_PID
    (while kill -0 "$pid" 2>/dev/null; do
      awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" >"$logs/vmhwm.tmp" 2>/dev/null &&
        mv "$logs/vmhwm.tmp" "$logs/vmhwm"
      sleep 0.2
    done) &
    RSS_PID=$!
  fi
  local rc=0 at
  wait_for_line "$logs/run.log" "partitions assigned" 90 || rc=$?
  [ "$rc" -ne 0 ] || wait_consumed "$url" "$MID" 300 || rc=$?
  if [ "$rc" -ne 0 ]; then
    record database FAIL "outage mid-stream" "the run $([ "$rc" -eq 2 ] && echo ended || echo stalled) before $MID messages were stored; see $logs/run.log"
    [ -z "$PIPE_PID" ] || { kill -KILL "$PIPE_PID" 2>/dev/null || true; reap; }
    return
  fi
  at=$(consumed "$url")
  log "database: stopping TimescaleDB for $DB_OUTAGE s at $at of $REF_TOTAL messages stored"
  scripts/timescaledb.sh pause "$DB_DIR"
  sleep "$DB_OUTAGE"
  local alive=1
  kill -0 "$PIPE_PID" 2>/dev/null || alive=
  scripts/timescaledb.sh resume "$DB_DIR"
  log "database: TimescaleDB is back"
  if [ -z "$alive" ]; then
    record database FAIL "outage mid-stream" "the run ended while the database was down"
  elif [ "$at" -ge $((REF_TOTAL / 2)) ]; then
    record database FAIL "outage mid-stream" "stopped too late: at $at of $REF_TOTAL messages"
  else
    record database PASS "outage mid-stream" "${DB_OUTAGE} s down at $at of $REF_TOTAL messages stored"
  fi
  wait_exit "$RUN_TIMEOUT"
  if [ "$STATUS" -eq 0 ]; then
    record database PASS "run" "finished after the outage"
  else
    record database FAIL "run" "status $STATUS (124: over ${RUN_TIMEOUT} s); see $logs/run.log"
  fi
  local rss=
  if [ -n "$timefile" ]; then
    rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$timefile" 2>/dev/null || true)
  else
    kill "$RSS_PID" 2>/dev/null || true
    wait "$RSS_PID" 2>/dev/null || true
    RSS_PID=
    rss=$(cat "$logs/vmhwm" 2>/dev/null || true)
  fi
  if [ -n "$rss" ]; then
    record database INFO "peak RSS" "$((rss / 1024)) MiB ($rss kB)"
  else
    record database INFO "peak RSS" unknown
  fi
  local retries
  retries=$(grep -c 'database unavailable' "$logs/run.log" || true)
  record database INFO "retries logged" "$retries 'database unavailable' lines"
  compare database "$url"
}

# --- run -----------------------------------------------------------------------------

wants kills && scenario_kills
wants broker && scenario_broker
wants database && scenario_database

{
  echo
  echo "=== chaos summary (seed $SEED, binary $BIN)"
  printf '%s\n' "${RESULTS[@]}"
  if [ "$FAILED" -eq 0 ]; then echo "=== PASS"; else echo "=== FAIL (logs: $WORK)"; fi
} >&2
exit "$FAILED"
}
