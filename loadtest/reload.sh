#!/usr/bin/env bash
# reload.sh — config reloads under load, drain under load (issue 4, "Measured").
#
# Question: while wrk drives load on loopback, does ringway take 100 config
# changes, a broken config and a 10,000-rule reload without one failed request
# or a latency spike, does each change show within 1 s, and does SIGTERM
# answer every request it had accepted?
#
# Phases (each bounded; all traffic on 127.0.0.1):
#   1 steady     wrk on a mixed path set → baseline p99
#   2 reloads    wrk for the whole phase; 100 writes alternating configs A/B
#                (in place / write+rename); after each write /switch is polled
#                until the answering backend flips
#   3 broken     an invalid file written mid-load; old routes keep serving;
#                `ringway check` points at FILE:LINE:COL; then restored
#   4 10k rules  a 10,000-rule config, steady p99, then 5 one-rule changes under load
#   5 drain      wrk on a 20 ms route + 100 one-shot probes in flight, SIGTERM
#
# Results: bench/results/<date>-<host>-reload/ (summary.md, results.json, raw/,
# configs/). See loadtest/README.md ("reload.sh"). Every process this script
# starts is stopped by PID on exit, Ctrl-C included.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
COMMAND_LINE="$0$(printf ' %q' "$@")"
HELPER=$HERE/reload_helper.py
MIX_LUA=$HERE/wrk/paths.lua

# ---- defaults ---------------------------------------------------------------
SHARDS=1
RELOADS=100
STEADY=10         # seconds of each steady-state wrk run
WARMUP=3
CONNECTIONS=50
BIG_RULES=10000
BIG_RELOADS=5
DRAIN_PROBES=100
DRAIN_SECONDS=8
BROKEN_SECONDS=6
QUICK=0
DO_BUILD=1
DO_INSTALL=1
OUT=""
BACKEND_BIN=${BACKEND_BIN:-$REPO/target/release/ringway-backend}
RINGWAY_BIN=${RINGWAY_BIN:-$REPO/target/release/ringway}
B1_PORT=${B1_PORT:-19101}
B2_PORT=${B2_PORT:-19102}
SLOW_PORT=${SLOW_PORT:-19103}
PROBE_PORT=${PROBE_PORT:-19104}
RINGWAY_PORT=${RINGWAY_PORT:-18180}
ADMIN_PORT=${ADMIN_PORT:-18181}

usage() {
    cat <<EOF
usage: loadtest/reload.sh [options]

  --quick          smoke test: 10 reloads, 3 s runs, 2 big reloads, 20 drain probes (~1 min)
  --shards N       ringway shards (default 1)
  --reloads N      config writes in the reload phase (default 100)
  --duration S     seconds per steady-state wrk run (default 10)
  --connections C  wrk connections (default 50)
  --rules N        rules in the big config (default 10000)
  --out DIR        results directory (default bench/results/<date>-<host>-reload)
  --no-build       do not cargo build (use target/release as it is)
  --no-install     do not apt-get install wrk/curl if missing

Ports (env): B1_PORT=$B1_PORT B2_PORT=$B2_PORT SLOW_PORT=$SLOW_PORT PROBE_PORT=$PROBE_PORT
             RINGWAY_PORT=$RINGWAY_PORT ADMIN_PORT=$ADMIN_PORT
EOF
}

while (($#)); do
    case $1 in
    --quick) QUICK=1; shift ;;
    --shards) SHARDS=$2; shift 2 ;;
    --reloads) RELOADS=$2; shift 2 ;;
    --duration) STEADY=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --rules) BIG_RULES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    --no-install) DO_INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ((QUICK)); then
    RELOADS=10 STEADY=3 WARMUP=1 BIG_RELOADS=2 DRAIN_PROBES=20 DRAIN_SECONDS=5 BROKEN_SECONDS=3
fi

log() { printf '[reload %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- process bookkeeping ----------------------------------------------------
STARTED_PIDS=()
WORK=$(mktemp -d /tmp/ringway-reload.XXXXXX)

stop_pid() { # TERM, wait up to 3 s, KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local keep=() p
    for p in "${STARTED_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    STARTED_PIDS=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- tools, build -------------------------------------------------------------
missing=()
for pair in wrk:wrk curl:curl python3:python3; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    if ((DO_INSTALL == 0)) || [[ $(id -u) != 0 ]]; then
        log "missing tools: ${missing[*]} (install them, or run as root without --no-install)"
        exit 1
    fi
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ((DO_BUILD)); then
    log "cargo build --release -p ringway -p ringway-backend"
    (cd "$REPO" && cargo build --release -p ringway -p ringway-backend)
fi
for b in "$BACKEND_BIN" "$RINGWAY_BIN"; do
    [[ -x $b ]] || { log "no binary at $b (run without --no-build)"; exit 1; }
done
for port in "$B1_PORT" "$B2_PORT" "$SLOW_PORT" "$PROBE_PORT" "$RINGWAY_PORT" "$ADMIN_PORT"; do
    if command -v ss >/dev/null && ss -Hltn "sport = :$port" | grep -q .; then
        log "port $port is already in use; set the *_PORT variables to free ports"
        exit 1
    fi
done

# ---- results directory ----------------------------------------------------------
if [[ -z $OUT ]]; then
    OUT=$REPO/bench/results/$(date +%F)-$(hostname -s)-reload
    [[ -e $OUT ]] && OUT=$OUT-$(date +%H%M%S)
fi
mkdir -p "$OUT/raw" "$OUT/configs"
: >"$OUT/results.json"
: >"$OUT/notes.md"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

row() { python3 "$HELPER" row "$OUT" "$@"; }
jget() { python3 "$HELPER" get "$@"; }
note() { echo "$*" >>"$OUT/notes.md"; }
# pass/fail from a python expression over the arguments (x, y)
check() { python3 -c "import sys; x=float(sys.argv[1]); y=float(sys.argv[2]); print('pass' if ($1) else 'fail')" "$2" "${3:-0}"; }
metric() { python3 "$HELPER" metric "$ADMIN_PORT" "$1"; }
int() { printf '%.0f' "$1"; }

# ---- configs --------------------------------------------------------------------
CONF=$WORK/conf      # the generated configs
LIVE=$WORK/live      # the directory ringway watches: only its config lives there
mkdir -p "$CONF" "$LIVE"
python3 "$HELPER" gen "$CONF" --port "$RINGWAY_PORT" --admin-port "$ADMIN_PORT" \
    --b1 "$B1_PORT" --b2 "$B2_PORT" --slow "$SLOW_PORT" --probe "$PROBE_PORT" \
    --shards "$SHARDS" --rules "$BIG_RULES" >"$WORK/gen.json"
BROKEN_LINE=$(jget "$WORK/gen.json" broken_line)
# The 10k-rule files are ~1 MB each: keep their first lines (regenerate them
# with `reload_helper.py gen`).
for f in "$CONF"/*.toml; do
    case $f in
    */big-*) head -n 60 "$f" >"$OUT/configs/$(basename "$f" .toml).head.toml" ;;
    *) cp "$f" "$OUT/configs/" ;;
    esac
done
LIVE_CONF=$LIVE/ringway.toml

# ---- processes ---------------------------------------------------------------------
wait_http() { # wait_http PORT PATH PID: 200 within 10 s while PID lives
    local i code
    for ((i = 0; i < 100; i++)); do
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1$2" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start_backend() { # start_backend PORT DELAY_MS → BACKEND_PID
    "$BACKEND_BIN" --listen "127.0.0.1:$1" --threads 1 --size 64 --delay-ms "$2" \
        >"$OUT/raw/backend-$1.log" 2>&1 &
    BACKEND_PID=$!
    STARTED_PIDS+=("$BACKEND_PID")
    wait_http "$1" / "$BACKEND_PID" || { log "backend on $1 did not come up"; exit 1; }
}

RINGWAY_PID=""
start_ringway() { # start_ringway CONFIG_SRC PROBE_PATH LOGNAME
    cp "$1" "$LIVE_CONF"
    "$RINGWAY_BIN" run -c "$LIVE_CONF" >"$OUT/raw/$3" 2>&1 &
    RINGWAY_PID=$!
    STARTED_PIDS+=("$RINGWAY_PID")
    if ! wait_http "$RINGWAY_PORT" "$2" "$RINGWAY_PID" || ! wait_http "$ADMIN_PORT" /healthz "$RINGWAY_PID"; then
        log "ringway did not come up; log tail:"
        tail -n 10 "$OUT/raw/$3" >&2
        exit 1
    fi
}

# ringway must still be the process we started, not draining: a signal from
# outside (another user's `pkill ringway`, say) would otherwise read as a
# ringway failure. Ends the run with the summary when it is not.
finish() {
    local LOAD_AFTER
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    {
        echo "Load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER on $(nproc) CPUs."
        echo "Ran in $((SECONDS - T0)) s. Raw outputs in \`raw/\` (wrk text, per-write JSON lines, ringway logs), configs in \`configs/\`."
    } >>"$OUT/notes.md"
    log "done in $((SECONDS - T0)) s"
    local rc=0
    python3 "$HELPER" summary "$OUT" || rc=1
    log "wrote $OUT/summary.md$( ((rc)) && echo ' — some measurements FAILED')"
    return "$rc"
}
assert_alive() { # assert_alive PHASE LOGNAME
    local why=""
    if ! kill -0 "$RINGWAY_PID" 2>/dev/null; then
        why="ringway (pid $RINGWAY_PID) exited"
    elif grep -q 'draining' "$OUT/raw/$2"; then
        why="ringway (pid $RINGWAY_PID) started draining: it got SIGTERM/SIGINT from outside this script"
    fi
    [[ -z $why ]] && return 0
    log "$why during $1; log tail:"
    tail -n 5 "$OUT/raw/$2" >&2
    row "$1" "ringway still running and not draining" "$why (see raw/$2)" "running" fail
    note "**Run cut short:** $why during phase $1. Log tail: \`$(tail -n 3 "$OUT/raw/$2" | tr '\n' ' ' | sed 's/|/\\|/g')\`"
    [[ -n $WRK_PID ]] && { wrk_stop || true; }
    finish || true
    exit 1
}

WRK_PID=""
wrk_start() { # wrk_start SECONDS OUTFILE PATH... (background)
    local secs=$1 out=$2
    shift 2
    wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency --timeout 5s -s "$MIX_LUA" \
        "http://127.0.0.1:$RINGWAY_PORT" -- "$@" >"$out" 2>&1 &
    WRK_PID=$!
    STARTED_PIDS+=("$WRK_PID")
}
wrk_wait() { wait "$WRK_PID" || true; forget_pid "$WRK_PID"; WRK_PID=""; }
wrk_stop() { [[ -n $WRK_PID ]] || return 0; kill -INT "$WRK_PID" 2>/dev/null || true; wrk_wait; } # wrk prints its stats on SIGINT
wrk_run() { wrk_start "$@"; wrk_wait; }

# ---- machine ------------------------------------------------------------------------
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
dirty=$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l)
{
    echo "## Machine and command"
    echo
    echo "- date: $(date -Is)"
    echo "- host: $(hostname)"
    echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "- kernel: $(uname -srm)"
    echo "- transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
    echo "- commit: $commit ($dirty uncommitted paths); ringway binary built $(date -r "$RINGWAY_BIN" -Is)"
    echo "- wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "- settings: shards $SHARDS, wrk -t1 -c$CONNECTIONS, steady runs ${STEADY}s, $RELOADS reloads, $BIG_RULES-rule config × $BIG_RELOADS reloads, $DRAIN_PROBES drain probes; unpinned"
    echo "- command: \`$COMMAND_LINE\`"
} >"$OUT/machine.md"

log "results: $OUT"
log "load average before: $LOAD_BEFORE (numbers on a busy machine are noisy)"
T0=$SECONDS

# =====================================================================================
# 1. steady state
MIX=(/switch /api/users/7 /items/42/detail /static/app.js /)
start_backend "$B1_PORT" 0
start_backend "$B2_PORT" 0
start_ringway "$CONF/a.toml" /switch ringway.log
RWLOG=$OUT/raw/ringway.log
log "ringway pid $RINGWAY_PID, backends on $B1_PORT (b1) and $B2_PORT (b2)"

log "1. steady state: warm-up ${WARMUP}s, then wrk ${STEADY}s"
wrk_run "$WARMUP" "$WORK/warmup.txt" "${MIX[@]}"
wrk_run "$STEADY" "$OUT/raw/1-steady.txt" "${MIX[@]}"
python3 "$HELPER" wrk "$OUT/raw/1-steady.txt" >"$WORK/steady.json"
STEADY_P99=$(jget "$WORK/steady.json" p99_ms)
row 1-steady "req/s, p50, p99" "$(jget "$WORK/steady.json" rps) req/s, p50 $(jget "$WORK/steady.json" p50_ms) ms, p99 $STEADY_P99 ms" "" info
row 1-steady "non-2xx + socket errors" "$(jget "$WORK/steady.json" non2xx) + $(jget "$WORK/steady.json" socket_errors)" "0" \
    "$(check 'x == 0' "$(($(jget "$WORK/steady.json" non2xx) + $(jget "$WORK/steady.json" socket_errors)))")"

# =====================================================================================
# 2. reloads under load
assert_alive 1-steady ringway.log
log "2. $RELOADS reloads under load"
OK0=$(metric 'ringway_config_reloads_total{result="ok"}')
FAILED0=$(metric 'ringway_config_reloads_total{result="failed"}')
V0=$(python3 "$HELPER" config "$ADMIN_PORT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
python3 "$HELPER" threads "$RINGWAY_PID" >"$WORK/th0.json"
wrk_start 900 "$OUT/raw/2-reloads.txt" "${MIX[@]}" # stopped (SIGINT) when the writes are done
sleep 1
python3 "$HELPER" flip --config "$LIVE_CONF" --a "$CONF/a.toml" --b "$CONF/b.toml" \
    --port-a "$B1_PORT" --port-b "$B2_PORT" --port "$RINGWAY_PORT" --admin "$ADMIN_PORT" \
    --log "$RWLOG" --count "$RELOADS" --out "$OUT/raw/2-reloads-flips.jsonl" >"$WORK/flip.json" || true
assert_alive 2-reloads ringway.log
sleep 1
wrk_stop
python3 "$HELPER" threads "$RINGWAY_PID" >"$WORK/th1.json"
cp "$WORK/flip.json" "$OUT/raw/2-reloads-flips-summary.json"
python3 "$HELPER" wrk "$OUT/raw/2-reloads.txt" >"$WORK/reloads.json"
OK1=$(metric 'ringway_config_reloads_total{result="ok"}')
V1=$(python3 "$HELPER" config "$ADMIN_PORT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
R_NON2XX=$(jget "$WORK/reloads.json" non2xx)
R_SOCK=$(jget "$WORK/reloads.json" socket_errors)
R_P99=$(jget "$WORK/reloads.json" p99_ms)
row 2-reloads "wrk during the writes" "$(jget "$WORK/reloads.json" requests) requests, $(jget "$WORK/reloads.json" rps) req/s, p50 $(jget "$WORK/reloads.json" p50_ms) ms" "" info
row 2-reloads "wrk non-2xx" "$R_NON2XX" "0" "$(check 'x == 0' "$R_NON2XX")"
row 2-reloads "wrk socket errors (connect/read/write/timeout)" "$R_SOCK ($(jget "$WORK/reloads.json" connect)/$(jget "$WORK/reloads.json" read)/$(jget "$WORK/reloads.json" write)/$(jget "$WORK/reloads.json" timeout))" "0" "$(check 'x == 0' "$R_SOCK")"
row 2-reloads "p99 during reloads vs steady" "$R_P99 ms vs $STEADY_P99 ms ($(python3 -c "print(round($R_P99/$STEADY_P99,2))")×); max $(jget "$WORK/reloads.json" max_ms) vs $(jget "$WORK/steady.json" max_ms) ms" "≤ 2×" "$(check 'x <= 2*y' "$R_P99" "$STEADY_P99")"
SW_N=$(jget "$WORK/flip.json" switched)
row 2-reloads "writes whose switch was seen on /switch" "$SW_N of $RELOADS" "all" "$(check "x == $RELOADS" "$SW_N")"
row 2-reloads "write → /switch flipped: median / max" "$(jget "$WORK/flip.json" switch_ms_median) ms / $(jget "$WORK/flip.json" switch_ms_max) ms" "max ≤ 1000 ms" \
    "$(check 'x == 0' "$(jget "$WORK/flip.json" over_1s)")"
row 2-reloads "  by write style: in place median/max, write+rename median/max" \
    "$(jget "$WORK/flip.json" by_style.in-place.median)/$(jget "$WORK/flip.json" by_style.in-place.max) ms, $(jget "$WORK/flip.json" by_style.rename.median)/$(jget "$WORK/flip.json" by_style.rename.max) ms" "" info
row 2-reloads "write → 'reloaded: version N' log line: median / max" "$(jget "$WORK/flip.json" log_ms_median) ms / $(jget "$WORK/flip.json" log_ms_max) ms" "" info
row 2-reloads "ringway CPU by thread during the phase" "$(python3 "$HELPER" threads-delta "$WORK/th0.json" "$WORK/th1.json")" "" info
row 2-reloads "/switch poll errors (probe client)" "$(jget "$WORK/flip.json" poll_errors)" "0" "$(check 'x == 0' "$(jget "$WORK/flip.json" poll_errors)")"
row 2-reloads "reloads_total{ok} delta; /config version" "+$(int "$(python3 -c "print($OK1-$OK0)")"); $V0 → $V1" "+$RELOADS" "$(check "x == $RELOADS and $V1 - $V0 == $RELOADS" "$(python3 -c "print($OK1-$OK0)")")"

# =====================================================================================
# 3. a broken config mid-load
assert_alive 2-reloads ringway.log
log "3. broken config mid-load"
FAILED0=$(metric 'ringway_config_reloads_total{result="failed"}')
OK0=$(metric 'ringway_config_reloads_total{result="ok"}')
BEFORE_PORT=$(curl -s -o /dev/null -D - "http://127.0.0.1:$RINGWAY_PORT/switch" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-backend-port"{print $2}')
wrk_start "$BROKEN_SECONDS" "$OUT/raw/3-broken.txt" "${MIX[@]}"
sleep "$(python3 -c "print($BROKEN_SECONDS/3)")"
cat "$CONF/broken.toml" >"$LIVE_CONF" # in place
sleep 1
AFTER_PORT=$(curl -s -o /dev/null -D - "http://127.0.0.1:$RINGWAY_PORT/switch" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-backend-port"{print $2}')
ITEM_CODE=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RINGWAY_PORT/items/42/detail")
FAILED1=$(metric 'ringway_config_reloads_total{result="failed"}')
python3 "$HELPER" config "$ADMIN_PORT" >"$OUT/raw/3-broken-config.json"
LAST_ERR=$(jget "$OUT/raw/3-broken-config.json" last_reload_error)
wrk_wait
assert_alive 3-broken ringway.log
python3 "$HELPER" wrk "$OUT/raw/3-broken.txt" >"$WORK/broken.json"
set +e
"$RINGWAY_BIN" check -c "$CONF/broken.toml" >"$OUT/raw/3-check-broken.txt" 2>&1
CHECK_RC=$?
set -e
CHECK_LINE=$(grep -m1 -E "broken\.toml:[0-9]+:[0-9]+:" "$OUT/raw/3-check-broken.txt" || true)
B_ERR=$(($(jget "$WORK/broken.json" non2xx) + $(jget "$WORK/broken.json" socket_errors)))
row 3-broken "wrk non-2xx + socket errors" "$(jget "$WORK/broken.json" non2xx) + $(jget "$WORK/broken.json" socket_errors) ($(jget "$WORK/broken.json" requests) requests)" "0" "$(check 'x == 0' "$B_ERR")"
row 3-broken "old routes keep serving (/switch backend before → after; /items/42/detail)" "$BEFORE_PORT → $AFTER_PORT; $ITEM_CODE" "same port; 200" \
    "$([[ -n $BEFORE_PORT && $BEFORE_PORT == "$AFTER_PORT" && $ITEM_CODE == 200 ]] && echo pass || echo fail)"
row 3-broken "reloads_total{failed} delta" "+$(int "$(python3 -c "print($FAILED1-$FAILED0)")")" "+1" "$(check 'x == 1' "$(python3 -c "print($FAILED1-$FAILED0)")")"
row 3-broken "/config last_reload_error" "\`${LAST_ERR//|/\\|}\`" "FILE:LINE:COL" \
    "$([[ $LAST_ERR == *ringway.toml:$BROKEN_LINE:* ]] && echo pass || echo fail)"
row 3-broken "ringway check -c broken.toml (exit code, first line)" "exit $CHECK_RC: \`${CHECK_LINE//|/\\|}\`" "exit 1, broken.toml:$BROKEN_LINE:COL" \
    "$([[ $CHECK_RC == 1 && $CHECK_LINE == *broken.toml:$BROKEN_LINE:* ]] && echo pass || echo fail)"
# Restore: write the config that is not live, so a real reload must happen after
# the failed one (and clear last_reload_error).
if [[ $BEFORE_PORT == "$B1_PORT" ]]; then
    RESTORE_A=$CONF/a.toml RESTORE_B=$CONF/b.toml OTHER_PORT=$B2_PORT
else
    RESTORE_A=$CONF/b.toml RESTORE_B=$CONF/a.toml OTHER_PORT=$B1_PORT
fi
python3 "$HELPER" flip --config "$LIVE_CONF" --a "$RESTORE_A" --b "$RESTORE_B" \
    --port-a "$BEFORE_PORT" --port-b "$OTHER_PORT" \
    --port "$RINGWAY_PORT" --admin "$ADMIN_PORT" --log "$RWLOG" --count 1 \
    --out "$OUT/raw/3-restore-flip.jsonl" >"$WORK/restore.json" || true
python3 "$HELPER" config "$ADMIN_PORT" >"$OUT/raw/3-restored-config.json"
row 3-broken "restore: valid config written after the broken one → switch; last_reload_error" \
    "switch in $(jget "$WORK/restore.json" switch_ms_max) ms; $(jget "$OUT/raw/3-restored-config.json" last_reload_error | sed 's/^$/null/')" "≤ 1000 ms; null" \
    "$([[ $(jget "$WORK/restore.json" over_1s) == 0 && -z $(jget "$OUT/raw/3-restored-config.json" last_reload_error) ]] && echo pass || echo fail)"

# =====================================================================================
# 4. a reload compiling 10,000 rules
assert_alive 3-broken ringway.log
log "4. $BIG_RULES-rule config"
BIGMIX=(/switch /e/3 /e/9996 /p/4/x /p/9997/y/z /g/5/a/b /g/9998/c/d /miss/all/rules)
# Load the big config (write+rename) and time it from the log.
BIGLOAD_T0=$(date +%s.%N)
LOGLINES0=$(grep -c 'reloaded: version' "$RWLOG" || true)
python3 - "$CONF/big-a.toml" "$LIVE_CONF" <<'EOF'
import os, sys
data = open(sys.argv[1]).read()
tmp = os.path.join(os.path.dirname(sys.argv[2]), ".ringway.toml.tmp")
open(tmp, "w").write(data)
os.replace(tmp, sys.argv[2])
EOF
for ((i = 0; i < 600; i++)); do
    (($(grep -c 'reloaded: version' "$RWLOG" || true) > LOGLINES0)) && break
    sleep 0.05
done
BIGLOAD_S=$(python3 -c "import time; print(round(time.time()-$BIGLOAD_T0, 2))")
BIGLINE=$(grep 'reloaded: version' "$RWLOG" | tail -1)
row 4-10k "first load of the $BIG_RULES-rule file (write → log line, idle)" "${BIGLOAD_S} s ($BIGLINE)" "" info
wrk_run "$WARMUP" "$WORK/warmup.txt" "${BIGMIX[@]}"
wrk_run "$STEADY" "$OUT/raw/4-big-steady.txt" "${BIGMIX[@]}"
python3 "$HELPER" wrk "$OUT/raw/4-big-steady.txt" >"$WORK/bigsteady.json"
BIG_STEADY_P99=$(jget "$WORK/bigsteady.json" p99_ms)
row 4-10k "steady with $BIG_RULES rules: req/s, p99" "$(jget "$WORK/bigsteady.json" rps) req/s, p99 $BIG_STEADY_P99 ms" "" info
OK0=$(metric 'ringway_config_reloads_total{result="ok"}')
python3 "$HELPER" threads "$RINGWAY_PID" >"$WORK/th0.json"
wrk_start 900 "$OUT/raw/4-big-reloads.txt" "${BIGMIX[@]}"
sleep 1
python3 "$HELPER" flip --config "$LIVE_CONF" --a "$CONF/big-a.toml" --b "$CONF/big-b.toml" \
    --port-a "$B1_PORT" --port-b "$B2_PORT" --port "$RINGWAY_PORT" --admin "$ADMIN_PORT" \
    --log "$RWLOG" --count "$BIG_RELOADS" --timeout 30 --gap-ms 1000 --poll-ms 10 \
    --out "$OUT/raw/4-big-flips.jsonl" >"$WORK/bigflip.json" || true
assert_alive 4-10k ringway.log
sleep 1
wrk_stop
python3 "$HELPER" threads "$RINGWAY_PID" >"$WORK/th1.json"
cp "$WORK/bigflip.json" "$OUT/raw/4-big-flips-summary.json"
OK1=$(metric 'ringway_config_reloads_total{result="ok"}')
python3 "$HELPER" wrk "$OUT/raw/4-big-reloads.txt" >"$WORK/bigreloads.json"
BR_P99=$(jget "$WORK/bigreloads.json" p99_ms)
BR_ERR=$(($(jget "$WORK/bigreloads.json" non2xx) + $(jget "$WORK/bigreloads.json" socket_errors)))
row 4-10k "wrk non-2xx + socket errors during $BIG_RELOADS reloads" "$(jget "$WORK/bigreloads.json" non2xx) + $(jget "$WORK/bigreloads.json" socket_errors) ($(jget "$WORK/bigreloads.json" requests) requests)" "0" "$(check 'x == 0' "$BR_ERR")"
row 4-10k "p99 during reloads vs steady ($BIG_RULES rules)" "$BR_P99 ms vs $BIG_STEADY_P99 ms ($(python3 -c "print(round($BR_P99/$BIG_STEADY_P99,2))")×); max $(jget "$WORK/bigreloads.json" max_ms) vs $(jget "$WORK/bigsteady.json" max_ms) ms; $(jget "$WORK/bigreloads.json" rps) vs $(jget "$WORK/bigsteady.json" rps) req/s" "≤ 2×" "$(check 'x <= 2*y' "$BR_P99" "$BIG_STEADY_P99")"
row 4-10k "reload time: write → 'reloaded' log line, median / max" "$(jget "$WORK/bigflip.json" log_ms_median) ms / $(jget "$WORK/bigflip.json" log_ms_max) ms" "" info
row 4-10k "write → /switch flipped, median / max (all $(jget "$WORK/bigflip.json" switched) of $BIG_RELOADS switched)" "$(jget "$WORK/bigflip.json" switch_ms_median) ms / $(jget "$WORK/bigflip.json" switch_ms_max) ms" "(none in the issue; 1 s for small configs)" \
    "$([[ $(jget "$WORK/bigflip.json" switched) == "$BIG_RELOADS" ]] && echo info || echo fail)"
row 4-10k "ringway CPU by thread during the phase" "$(python3 "$HELPER" threads-delta "$WORK/th0.json" "$WORK/th1.json")" "" info
row 4-10k "reloads_total{ok} delta" "+$(int "$(python3 -c "print($OK1-$OK0)")")" "+$BIG_RELOADS" "$(check "x == $BIG_RELOADS" "$(python3 -c "print($OK1-$OK0)")")"

# =====================================================================================
# 5. drain under load
assert_alive 4-10k ringway.log
log "5. drain: SIGTERM under load"
stop_pid "$RINGWAY_PID"
forget_pid "$RINGWAY_PID"
start_backend "$SLOW_PORT" 20
start_backend "$PROBE_PORT" 300
start_ringway "$CONF/drain.toml" /slow ringway-drain.log
wrk_start "$DRAIN_SECONDS" "$OUT/raw/5-drain-wrk.txt" /slow
sleep "$(python3 -c "print($DRAIN_SECONDS/2)")"
assert_alive 5-drain ringway-drain.log
SIG_T0=$(date +%s.%N)
python3 "$HELPER" drain --port "$RINGWAY_PORT" --admin "$ADMIN_PORT" --pid "$RINGWAY_PID" --n "$DRAIN_PROBES" \
    >"$OUT/raw/5-drain-probes.json"
set +e
wait "$RINGWAY_PID"
RW_RC=$?
set -e
EXIT_S=$(python3 -c "import time; print(round(time.time()-$SIG_T0, 2))")
forget_pid "$RINGWAY_PID"
wrk_stop # at once: after ringway exits wrk only counts refused reconnects
python3 "$HELPER" wrk "$OUT/raw/5-drain-wrk.txt" >"$WORK/drain.json"
D=$OUT/raw/5-drain-probes.json
row 5-drain "probes accepted by ringway before SIGTERM (accepted_connections_total)" "$(jget "$D" accepted_before_signal) of $DRAIN_PROBES" "all" \
    "$(check "x >= $DRAIN_PROBES" "$(jget "$D" accepted_before_signal)")"
row 5-drain "probes answered with a complete 200" "$(jget "$D" complete_200) of $DRAIN_PROBES (last $(jget "$D" last_answer_ms_after_signal) ms after the signal)" "all" \
    "$(check "x == $DRAIN_PROBES" "$(jget "$D" complete_200)")"
row 5-drain "ringway exit code; signal → exit" "$RW_RC; ≤ ${EXIT_S} s" "0" "$(check 'x == 0' "$RW_RC")"
row 5-drain "wrk (/slow, 20 ms) requests; non-2xx" "$(jget "$WORK/drain.json" requests); $(jget "$WORK/drain.json" non2xx)" "0 non-2xx" "$(check 'x == 0' "$(jget "$WORK/drain.json" non2xx)")"
row 5-drain "wrk read errors + timeouts (a connection closed with a request on it)" "$(jget "$WORK/drain.json" read) + $(jget "$WORK/drain.json" timeout)" "0" \
    "$(check 'x == 0' "$(($(jget "$WORK/drain.json" read) + $(jget "$WORK/drain.json" timeout)))")"
row 5-drain "wrk connect + write errors (reconnects refused once the listener closed: expected)" "$(jget "$WORK/drain.json" connect) + $(jget "$WORK/drain.json" write)" "" info

# =====================================================================================
finish # exit status 1 when a measurement failed
