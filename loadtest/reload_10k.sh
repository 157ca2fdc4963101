#!/usr/bin/env bash
# reload_10k.sh — phase 4 of reload.sh alone, repeated, with the variants that
# tell apart what a 10,000-rule reload does to the p99 of the traffic around it.
#
# Each round: two backends (ringway-backend), ringway on the 10,000-rule config,
# wrk -t1 -c50 warm-up 3 s, steady 10 s (p99 S), then wrk for the phase while
# five "events" happen 1.1 s apart (p99 R), then one more steady 10 s (p99 P).
# Printed per round: S, R, R/S, P and the control thread's CPU. At the end, the
# median R/S. All traffic is on 127.0.0.1; every process is stopped on exit.
#
# Events (--event):
#   reload   write the other of big-a/big-b (a real reload: compile + install)
#   failed   write one of two configs with a duplicate route name in the last
#            rule (compiled in full, then refused: no install)
#   none     nothing (the harness alone)
#   check    run `ringway check` on the 10,000-rule file (another process)
#   burn     100 ms of pure CPU in another process (python3 busy loop)
#
# Options:
#   --rounds N         rounds (default 3)
#   --control-nice N   renice ringway's control thread to N after start
#   --control-cpus L   restrict the control thread to CPU list L (taskset -c L)
#   --event-nice N     run the check/burn event under `nice -n N`
#   --no-build         use target/release as it is
#   env MIMALLOC_PURGE_DELAY=-1 etc. are passed through to ringway.
#
# docs/benchmarks.md ("Reload of 10,000 rules under load") quotes its runs.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
HELPER=$HERE/reload_helper.py
LUA=$HERE/wrk/paths.lua
RINGWAY_BIN=${RINGWAY_BIN:-$REPO/target/release/ringway}
BACKEND_BIN=${BACKEND_BIN:-$REPO/target/release/ringway-backend}
PORT=${RINGWAY_PORT:-18180} ADMIN=${ADMIN_PORT:-18181} B1=${B1_PORT:-19101} B2=${B2_PORT:-19102}
EVENT=reload ROUNDS=3 CONTROL_NICE="" CONTROL_CPUS="" EVENT_NICE="" BUILD=1

while (($#)); do
    case $1 in
    --event) EVENT=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --control-nice) CONTROL_NICE=$2; shift 2 ;;
    --control-cpus) CONTROL_CPUS=$2; shift 2 ;;
    --event-nice) EVENT_NICE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case $EVENT in reload | failed | none | check | burn) ;; *) echo "unknown --event $EVENT" >&2; exit 2 ;; esac
((BUILD)) && cargo build --release --locked -q --manifest-path "$REPO/Cargo.toml" -p ringway -p ringway-backend

WORK=$(mktemp -d /tmp/ringway-reload10k.XXXXXX)
PIDS=()
cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$HELPER" gen "$WORK/conf" --port "$PORT" --admin-port "$ADMIN" --b1 "$B1" --b2 "$B2" \
    --slow 19103 --probe 19104 --shards 1 --rules 10000 >/dev/null
# Two configs that compile in full and are then refused (a duplicate route name).
python3 - "$WORK/conf" <<'PYEOF'
import sys
d = sys.argv[1]
s = open(f"{d}/big-a.toml").read()
i = s.rindex('name = "all"')
for n, tag in (("r1", "a"), ("r2", "b")):
    open(f"{d}/dup-{tag}.toml", "w").write(s[:i] + f'name = "{n}"' + s[i + len('name = "all"'):])
PYEOF

MIX=(/switch /e/3 /e/9996 /p/4/x /p/9997/y/z /g/5/a/b /g/9998/c/d /miss/all/rules)
wrk_to() { wrk -t1 -c50 --latency --timeout 5s -s "$LUA" "http://127.0.0.1:$PORT" -d"$1" -- "${MIX[@]}"; }
p99() { python3 "$HELPER" wrk "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p99_ms"])'; }
control_ticks() { # utime+stime of the control thread, in clock ticks
    local t
    for t in /proc/"$1"/task/*; do
        if [[ $(cat "$t/comm" 2>/dev/null) == ringway-control ]]; then awk '{print $14+$15}' "$t/stat"; fi
    done
}
event() { # event I LIVE_CONFIG
    local nice=()
    [[ -n $EVENT_NICE ]] && nice=(nice -n "$EVENT_NICE")
    case $EVENT in
    reload) cp "$WORK/conf/big-$( (($1 % 2)) && echo b || echo a).toml" "$2" ;;
    failed) cp "$WORK/conf/dup-$( (($1 % 2)) && echo b || echo a).toml" "$2" ;;
    none) ;;
    check) "${nice[@]}" "$RINGWAY_BIN" check -c "$WORK/conf/big-a.toml" >/dev/null 2>&1 || true ;;
    burn) "${nice[@]}" timeout 0.1 python3 -c 'while True: pass' || true ;;
    esac
}

ratios=()
for ((round = 1; round <= ROUNDS; round++)); do
    R=$WORK/round$round
    mkdir -p "$R/live"
    "$BACKEND_BIN" --listen "127.0.0.1:$B1" --threads 1 --size 64 >/dev/null 2>&1 &
    PIDS+=($!)
    "$BACKEND_BIN" --listen "127.0.0.1:$B2" --threads 1 --size 64 >/dev/null 2>&1 &
    PIDS+=($!)
    cp "$WORK/conf/big-a.toml" "$R/live/ringway.toml"
    "$RINGWAY_BIN" run -c "$R/live/ringway.toml" >"$R/ringway.log" 2>&1 &
    RW=$!
    PIDS+=("$RW")
    up() { curl -sf -o /dev/null -m 1 "http://127.0.0.1:$1/$2"; }
    for ((i = 0; i < 100; i++)); do
        up "$B1" switch && up "$B2" switch && up "$PORT" switch && break
        kill -0 "$RW" 2>/dev/null || { echo "ringway exited; log:" >&2; tail -5 "$R/ringway.log" >&2; exit 1; }
        sleep 0.1
    done
    up "$B1" switch && up "$B2" switch && up "$PORT" switch ||
        { echo "ringway or a backend did not answer 200 within 10 s (a port in use?)" >&2; exit 1; }
    for t in /proc/"$RW"/task/*; do
        if [[ $(cat "$t/comm" 2>/dev/null) == ringway-control ]]; then
            if [[ -n $CONTROL_NICE ]]; then renice -n "$CONTROL_NICE" -p "$(basename "$t")" >/dev/null; fi
            if [[ -n $CONTROL_CPUS ]]; then taskset -pc "$CONTROL_CPUS" "$(basename "$t")" >/dev/null; fi
        fi
    done
    wrk_to 3s >/dev/null
    wrk_to 10s >"$R/steady.txt"
    c0=$(control_ticks "$RW")
    # wrk itself (not a function's subshell, which would run this script's trap):
    # SIGINT makes it print its figures and exit.
    wrk -t1 -c50 --latency --timeout 5s -s "$LUA" "http://127.0.0.1:$PORT" -d900s -- "${MIX[@]}" >"$R/events.txt" &
    WRK=$!
    PIDS+=("$WRK")
    sleep 1
    for i in 1 2 3 4 5; do
        event "$i" "$R/live/ringway.toml"
        sleep 1.1
    done
    kill -INT "$WRK" 2>/dev/null || true
    wait "$WRK" || true
    keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$WRK" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    c1=$(control_ticks "$RW")
    wrk_to 10s >"$R/post.txt"
    reloaded=$(grep -c 'reloaded: version' "$R/ringway.log" || true)
    kill "${PIDS[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    PIDS=()
    errors() { python3 "$HELPER" wrk "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["non2xx"] + j["socket_errors"])'; }
    bad=0
    for f in steady events post; do bad=$((bad + $(errors "$R/$f.txt"))); done
    s=$(p99 "$R/steady.txt") r=$(p99 "$R/events.txt") p=$(p99 "$R/post.txt")
    ratio=$(python3 -c "print(round($r/$s, 2))")
    ratios+=("$ratio")
    ms=$(python3 -c "print(round(($c1-$c0)*1000/$(getconf CLK_TCK)/5, 1))")
    echo "round $round ($EVENT): steady p99 $s ms, during events $r ms ($ratio×), after $p ms; control thread $ms ms CPU per event; 'reloaded' lines: $reloaded; wrk non-2xx + socket errors: $bad"
    ((bad == 0)) || echo "round $round: wrk saw errors: its figures do not count" >&2
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
echo "event $EVENT, control nice ${CONTROL_NICE:-0}, control CPUs ${CONTROL_CPUS:-any}, event nice ${EVENT_NICE:-0}, MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-default}: median p99 ratio ${median}× over $ROUNDS rounds (${ratios[*]})"
