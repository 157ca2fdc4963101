#!/usr/bin/env bash
# placement.sh — why unpinned req/s swings between rounds (issue 15).
#
# One proxy (ringway with 1 shard, or nginx as one process) in front of a
# one-process nginx backend, wrk -t1 -c50 unpinned, N rounds of D seconds on
# 127.0.0.1. During every round a sampler reads, every 5 ms, which CPU each
# thread last ran on (/proc/PID/task/TID/stat, field 39) and, per round, how long
# each waited on a run queue (/proc/.../schedstat). Printed per round: req/s,
# the share of samples in which the wrk thread and the backend sat on the
# proxy's CPU, and the proxy's run-queue wait per second.
#
#   loadtest/placement.sh [--proxy ringway|nginx] [--rounds N] [--duration S]
#                         [--no-build]
#
# docs/benchmarks.md ("Why unpinned req/s swings") quotes its runs.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RINGWAY_BIN=${RINGWAY_BIN:-$REPO/target/release/ringway}
PROXY=ringway ROUNDS=8 DURATION=5 BUILD=1
PROXY_PORT=${PROXY_PORT:-18280} BACKEND_PORT=${BACKEND_PORT:-19280}
while (($#)); do
    case $1 in
    --proxy) PROXY=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $PROXY == ringway || $PROXY == nginx ]] || { echo "--proxy ringway|nginx" >&2; exit 2; }
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 2)) || { echo "--duration: whole seconds, at least 2" >&2; exit 2; }
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 1; }
((BUILD)) && cargo build --release --locked -q --manifest-path "$REPO/Cargo.toml" --bin ringway

WORK=$(mktemp -d /tmp/ringway-placement.XXXXXX)
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

mkdir -p "$WORK/www" "$WORK/backend" "$WORK/proxy"
head -c 64 /dev/zero | tr '\0' 'x' >"$WORK/www/index"
nginx_conf() { # nginx_conf DIR LISTEN_PORT BODY   (BODY: a location block)
    cat >"$1/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    sendfile on;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$2 reuseport;
        $3
    }
}
EOF
}
nginx_conf "$WORK/backend" "$BACKEND_PORT" "location / { root $WORK/www; try_files /index =404; }"
nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" &
PIDS+=($!)
BACKEND_PID=$!
if [[ $PROXY == ringway ]]; then
    cat >"$WORK/proxy/ringway.toml" <<EOF
[server]
listen = ["127.0.0.1:$PROXY_PORT"]
shards = 1
[endpoints]
backend = "http://127.0.0.1:$BACKEND_PORT"
[[groups]]
name = "all"
  [[groups.routes]]
  name = "all"
  path = { prefix = "/" }
  to = "{#endpoints['backend']}"
EOF
    "$RINGWAY_BIN" run -c "$WORK/proxy/ringway.toml" >"$WORK/proxy/log" 2>&1 &
else
    nginx_conf "$WORK/proxy" "$PROXY_PORT" "location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
    nginx -c "$WORK/proxy/nginx.conf" -p "$WORK/proxy" &
fi
PROXY_PID=$!
PIDS+=("$PROXY_PID")
up() { curl -sf -o /dev/null -m 1 "http://127.0.0.1:$1/"; }
for ((i = 0; i < 50; i++)); do
    up "$BACKEND_PORT" && up "$PROXY_PORT" && break
    sleep 0.1
done
up "$BACKEND_PORT" && up "$PROXY_PORT" ||
    { echo "the backend or the proxy did not answer 200 within 5 s (a port in use?)" >&2; exit 1; }

# The proxy's working thread: ringway's shard, nginx's only thread.
proxy_tid() {
    local t
    for t in /proc/"$PROXY_PID"/task/*; do
        case $(cat "$t/comm") in ringway-shard-0 | nginx) basename "$t"; return ;; esac
    done
}
PTID=$(proxy_tid)
[[ -n $PTID ]] || { echo "no proxy thread found in pid $PROXY_PID" >&2; exit 1; }
wrk -t1 -c50 -d2s "http://127.0.0.1:$PROXY_PORT/" >/dev/null # warm-up

for ((round = 1; round <= ROUNDS; round++)); do
    wrk -t1 -c50 -d"${DURATION}s" "http://127.0.0.1:$PROXY_PORT/" >"$WORK/wrk.txt" &
    WRK=$!
    sleep 0.2
    python3 - "$PROXY_PID" "$PTID" "$BACKEND_PID" "$WRK" "$((DURATION - 1))" >"$WORK/sample.txt" <<'PYEOF'
import os, sys, time
proxy_pid, ptid, backend, wrk, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
def cpu(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])
def wait_ns(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        run, wait, _ = f.read().split()
        return int(run), int(wait)
# wrk's busy thread is the one that is not the main thread.
wtid = [t for t in os.listdir(f"/proc/{wrk}/task") if t != wrk] or [wrk]
wtid = wtid[0]
n = same_wrk = same_backend = both_other = 0
r0, w0 = wait_ns(proxy_pid, ptid)
end = time.monotonic() + secs
cpus = {}
while time.monotonic() < end:
    try:
        p, w, b = cpu(proxy_pid, ptid), cpu(wrk, wtid), cpu(backend, backend)
    except OSError:
        break
    n += 1
    same_wrk += w == p
    same_backend += b == p
    both_other += w != p and b != p
    cpus[p] = cpus.get(p, 0) + 1
    time.sleep(0.005)
r1, w1 = wait_ns(proxy_pid, ptid)
pct = lambda x: round(100 * x / max(n, 1))
print(f"proxy on cpu {max(cpus, key=cpus.get) if cpus else '?'} ({pct(max(cpus.values()) if cpus else 0)}%), "
      f"wrk with it {pct(same_wrk)}%, backend with it {pct(same_backend)}%, both elsewhere {pct(both_other)}%; "
      f"proxy ran {((r1 - r0) / 1e9) / secs:.2f} CPU-s/s, waited {((w1 - w0) / 1e6) / secs:.0f} ms/s on a run queue")
PYEOF
    wait "$WRK" || true
    rps=$(awk '/Requests\/sec/ {print int($2)}' "$WORK/wrk.txt")
    errs=$(awk '/Non-2xx|Socket errors/ {print}' "$WORK/wrk.txt" | tr '\n' ' ')
    echo "round $round ($PROXY): $rps req/s; $(cat "$WORK/sample.txt")${errs:+; wrk: $errs(figures do not count)}"
done
