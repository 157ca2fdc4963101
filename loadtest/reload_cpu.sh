#!/usr/bin/env bash
# reload_cpu.sh — the control thread's CPU per 10,000-rule reload, no traffic.
#
# Starts ringway on the 10,000-rule config of reload_helper.py, writes the other
# of big-a/big-b N times 0.6 s apart (each a real reload), and prints the control
# thread's utime+stime over those reloads divided by N. Run it a few times: one
# run moves ±10% on a VM. Nothing else should run meanwhile.
#
#   loadtest/reload_cpu.sh [--bin PATH] [--reloads N]     (defaults: target/release/ringway, 20)
#
# docs/benchmarks.md ("Reload of 10,000 rules under load") quotes its runs.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BIN=$REPO/target/release/ringway N=20
PORT=${RINGWAY_PORT:-18180} ADMIN=${ADMIN_PORT:-18181}
while (($#)); do
    case $1 in
    --bin) BIN=$2; shift 2 ;;
    --reloads) N=$2; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d /tmp/ringway-reloadcpu.XXXXXX)
RW=""
cleanup() {
    trap - EXIT INT TERM
    if [[ -n $RW ]]; then kill "$RW" 2>/dev/null || true; wait "$RW" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$HERE/reload_helper.py" gen "$WORK/conf" --port "$PORT" --admin-port "$ADMIN" --b1 19101 \
    --b2 19102 --slow 19103 --probe 19104 --shards 1 --rules 10000 >/dev/null
mkdir "$WORK/live"
cp "$WORK/conf/big-a.toml" "$WORK/live/ringway.toml"
"$BIN" run -c "$WORK/live/ringway.toml" >"$WORK/ringway.log" 2>&1 &
RW=$!
for ((i = 0; i < 100; i++)); do
    curl -sf -o /dev/null -m 1 "http://127.0.0.1:$ADMIN/ready" && break
    kill -0 "$RW" 2>/dev/null || { echo "ringway exited:" >&2; tail -5 "$WORK/ringway.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf -o /dev/null -m 1 "http://127.0.0.1:$ADMIN/ready" ||
    { echo "ringway's admin port $ADMIN did not answer /ready within 10 s (a port in use?)" >&2; exit 1; }
control=""
for t in /proc/"$RW"/task/*; do
    if [[ $(cat "$t/comm" 2>/dev/null) == ringway-control ]]; then control=$t/stat; fi
done
[[ -n $control ]] || { echo "no ringway-control thread" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "$control"; }
t0=$(ticks)
for ((i = 1; i <= N; i++)); do
    cp "$WORK/conf/big-$( ((i % 2)) && echo b || echo a).toml" "$WORK/live/ringway.toml"
    sleep 0.6
done
t1=$(ticks)
reloads=$(grep -c 'reloaded: version' "$WORK/ringway.log" || true)
((reloads == N)) || echo "warning: $reloads of $N writes reloaded" >&2
echo "$BIN: $reloads reloads, control thread $(python3 -c "print(round(($t1 - $t0) * 1000 / $(getconf CLK_TCK) / $N, 1))") ms CPU per reload"
