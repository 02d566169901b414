#!/usr/bin/env bash
# Proves that a self-contained HTML report renders in headless Chromium, and keeps a
# screenshot of it.
#
#   scripts/render_check.sh REPORT.html SCREENSHOT.png [MIN_PLOTS]
#
# Installs Debian's chromium with apt-get when it is missing (apt-get update only if
# the install fails without it), renders file://REPORT twice (a --screenshot at
# 1400x2400, and a --dump-dom of the page after its scripts ran), then
# scripts/render_check.py checks, reporting every failure:
#   * the report (and the rendered DOM) loads nothing external: no src="http…",
#     href="http…", url(http…) nor @import;
#   * SCREENSHOT is a valid PNG of the window's size and is not blank (>= 2% of pixels
#     off the most common colour, >= 20 distinct colours);
#   * the rendered DOM has >= MIN_PLOTS (default 4) <figure class="plot"> with an <svg>
#     inside, and no element with class "error".
# On success prints one summary line on stdout; otherwise exits 1 with the reasons.
#
# Environment: CHROMIUM (browser binary; default /usr/bin/chromium or chromium on PATH),
# RENDER_WINDOW (default 1400,2400), RENDER_TIMEOUT (seconds per Chromium run, 120),
# RENDER_MIN_NON_BG (0.02), RENDER_MIN_COLOURS (20).
set -euo pipefail

SCRIPT_NAME=render_check.sh
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 REPORT.html SCREENSHOT.png [MIN_PLOTS]" >&2
  exit 2
fi
report=$1
shot=$2
min_plots=${3:-4}
case $min_plots in '' | *[!0-9]*) die "MIN_PLOTS must be a whole number, got '$min_plots'" ;; esac
window=${RENDER_WINDOW:-1400,2400}
render_timeout=${RENDER_TIMEOUT:-120}

[ -f "$report" ] || die "report $report does not exist"
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the checks"
report_abs=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
shot_dir=$(dirname "$shot")
mkdir -p "$shot_dir"
shot_abs=$(cd "$shot_dir" && pwd)/$(basename "$shot")
# file:// URL of the absolute path, percent-encoding what a URL cannot carry as is.
url=$(python3 -c 'import pathlib,sys; print(pathlib.Path(sys.argv[1]).as_uri())' "$report_abs")

work=$(mktemp -d "${TMPDIR:-/tmp}/render_check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- Chromium -------------------------------------------------------------------------
find_chromium() {
  if [ -n "${CHROMIUM:-}" ]; then
    command -v "$CHROMIUM" 2>/dev/null || true
  elif [ -x /usr/bin/chromium ]; then
    echo /usr/bin/chromium
  else
    command -v chromium 2>/dev/null || true
  fi
}

install_chromium() {
  local logfile=$work/apt.log
  command -v apt-get >/dev/null 2>&1 || die "chromium is missing and there is no apt-get: install it by hand"
  log "chromium not found: installing Debian's chromium (takes a while)"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300)
  if ! as_root "${apt[@]}" install --no-install-recommends chromium >>"$logfile" 2>&1; then
    log "install failed without a package list update; running apt-get update and retrying"
    if ! { as_root "${apt[@]}" update && as_root "${apt[@]}" install --no-install-recommends chromium; } >>"$logfile" 2>&1; then
      tail -n 30 "$logfile" | sed 's/^/    /' >&2
      die "could not install chromium with apt-get"
    fi
  fi
}

chromium=$(find_chromium)
if [ -z "$chromium" ]; then
  [ -z "${CHROMIUM:-}" ] || die "CHROMIUM=$CHROMIUM is not an executable"
  t0=$(date +%s)
  install_chromium
  chromium=$(find_chromium)
  [ -n "$chromium" ] || die "chromium installed, yet neither /usr/bin/chromium nor chromium on PATH"
  log "installed $("$chromium" --version 2>/dev/null | head -n 1) in $(($(date +%s) - t0))s"
fi

# The flags this closed-network machine needs: run as root without the sandbox, no GPU,
# and nothing that phones home (Chromium's background connections are refused here).
# Each run gets a fresh empty profile.
base_flags=(
  --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --disable-default-apps --disable-extensions --mute-audio
  --hide-scrollbars --force-device-scale-factor=1
)

# run_chromium NAME STDOUT_FILE HEADLESS_FLAG ARGS...: one Chromium run with its own
# profile; stderr goes to $work/NAME.err.
run_chromium() {
  local name=$1 out=$2 headless=$3
  shift 3
  local profile=$work/profile-$name
  rm -rf "$profile"
  mkdir -p "$profile"
  timeout --kill-after=10 "$render_timeout" "$chromium" "$headless" "${base_flags[@]}" \
    --user-data-dir="$profile" "$@" >"$out" 2>"$work/$name.err"
}

show_err() {
  grep -v -e 'dbus' -e 'Fontconfig' "$work/$1.err" | tail -n 15 | sed 's/^/    /' >&2 || true
}

# Recent Chromium takes --headless (the new headless mode); older builds want
# --headless=new for the same. Try the plain flag first.
rm -f "$shot_abs"
t0=$(date +%s.%N)
headless=
for flag in --headless --headless=new; do
  rc=0
  run_chromium shot "$work/shot.out" "$flag" --window-size="$window" \
    --screenshot="$shot_abs" "$url" || rc=$?
  if [ "$rc" -eq 0 ] && [ -s "$shot_abs" ]; then
    headless=$flag
    break
  fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    show_err shot
    die "Chromium did not finish the screenshot within ${render_timeout}s"
  fi
  log "chromium $flag gave no screenshot (exit $rc)"
done
if [ -z "$headless" ]; then
  show_err shot
  die "Chromium produced no screenshot of $report_abs"
fi
t1=$(date +%s.%N)

rc=0
run_chromium dom "$work/dom.html" "$headless" --window-size="$window" --dump-dom "$url" || rc=$?
if [ "$rc" -ne 0 ]; then
  show_err dom
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || die "Chromium did not dump the DOM within ${render_timeout}s"
  die "Chromium's --dump-dom failed (exit $rc)"
fi

render_s=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$t0" "$t1")
w=${window%,*}
h=${window#*,}
python3 "$here/render_check.py" \
  --html "$report_abs" --png "$shot_abs" --dom "$work/dom.html" \
  --size "${w}x${h}" --min-plots "$min_plots" \
  --min-non-bg "${RENDER_MIN_NON_BG:-0.02}" --min-colours "${RENDER_MIN_COLOURS:-20}" \
  --render-seconds "$render_s"
