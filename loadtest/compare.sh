#!/usr/bin/env bash
# compare.sh — ringway vs nginx vs HAProxy, one command.
#
# Question: on this machine, for each scenario, how many requests per second
# does each proxy relay, at what p50/p99 latency, for how much CPU and memory,
# next to the backend served directly (the ceiling)?
#
# See loadtest/README.md for what each scenario and layout means and how to
# read the results. Run `loadtest/compare.sh --help` for the flags.
#
# Traffic goes to 127.0.0.1 only; every run is bounded by --duration; every
# process this script starts is killed (by PID) when it exits.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
COMMAND_LINE="$0$(printf ' %q' "$@")"

# ---- defaults ---------------------------------------------------------------
ALL_SCENARIOS=(small 1k 64k 256k 1m 100m newconn routes10k backend-fail tls-small tls-newconn tls-resume tls-upstream auth-none auth-key auth-unverified auth-sig limit-off limit-key limit-cluster)
# The TLS, auth and limit scenarios are chosen explicitly (--scenarios tls-small,…).
SCENARIOS=(small 1k 64k 1m newconn routes10k backend-fail)
TARGETS=(backend ringway nginx haproxy)
ROUNDS=3
DURATION=10
WARMUP=5
LAYOUTS=(split)
SHARDS=1
CONNECTIONS=50
WRK_THREADS=1
OUT=""
DO_INSTALL=1
DO_BUILD=1
# What the proxies relay to: nginx serving a fixed body (software none of the three
# proxies is) unless --backend fixture picks ringway-backend.
BACKEND=nginx
GENERATORS=(wrk)
BACKEND_BIN=${BACKEND_BIN:-$REPO/target/release/ringway-backend}
RINGWAY_BIN=${RINGWAY_BIN:-$REPO/target/release/ringway}
BACKEND_PORT=${BACKEND_PORT:-19000}
RINGWAY_PORT=${RINGWAY_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
HAPROXY_PORT=${HAPROXY_PORT:-18082}
BASELINE_PORT=${BASELINE_PORT:-18083}
# TLS listeners (for the tls-* scenarios), one per proxy.
RINGWAY_TLS_PORT=${RINGWAY_TLS_PORT:-18443}
NGINX_TLS_PORT=${NGINX_TLS_PORT:-18444}
HAPROXY_TLS_PORT=${HAPROXY_TLS_PORT:-18445}
# tls-upstream: stunnel terminates TLS in front of the backend.
STUNNEL_PORT=${STUNNEL_PORT:-19443}
REDIS_PORT=${REDIS_PORT:-19379}
BASELINE_BIN=
BASELINE_SET=()
RINGWAY_SET=()
PROXY_QUOTA=
# CPU sets for the split layout (override for bigger machines).
LOAD_CPUS=${LOAD_CPUS:-0}
PROXY_CPUS=${PROXY_CPUS:-}

usage() {
    cat <<EOF
usage: loadtest/compare.sh [options]

  --scenarios a,b     subset of: ${ALL_SCENARIOS[*]}
                      (default: all but the tls-* ones: tls-small = keep-alive HTTPS,
                      tls-newconn = a full handshake per request, tls-resume = a
                      resumed handshake per request, tls-upstream = plain client,
                      HTTPS to the backend (through stunnel), verified; ECDSA P-256)
  --targets a,b       subset of: ${TARGETS[*]} (default: all; backend = ceiling)
  --rounds N          rounds per scenario, target order rotated each round (default 3)
  --duration S        seconds per counted run (default 10)
  --warmup S          seconds of warm-up per target per scenario, not counted (default 5)
  --layout L          split | unpinned | both (default split)
  --shards N          nginx workers / haproxy nbthread / ringway shards (default 1)
  --connections C     wrk connections (default 50)
  --wrk-threads T     wrk threads (default 1)
  --out DIR           results directory (default bench/results/<date>-<host>)
  --no-install        do not apt-get install missing tools
  --no-build          do not cargo build (use the binaries as they are)
  --backend B         nginx (default): a separate nginx (one process) serving a fixed
                      body of the scenario's size from a file, sendfile on;
                      fixture: ringway-backend (our own test backend)
  --generators a,b    load generators, each run against the same targets: wrk
                      (default), oha (loadtest/oha.sh; not for the scenarios that need
                      a wrk Lua script or openssl: routes10k, backend-fail, auth-sig,
                      auth-unverified, tls-resume). oha's rows are layout "LAYOUT+oha"
  --backend-bin PATH  ringway-backend binary (default target/release/ringway-backend)
  --ringway-bin PATH  ringway binary (default target/release/ringway)
  --baseline-bin PATH a second ringway binary (e.g. the previous commit), run as
                      target "baseline" with the same config: before/after in one run
  --baseline-set K=V  a ringway config key (dotted, e.g. upstream.splice_min_bytes=0)
                      set for the baseline only: an A/B of one setting, same binary
  --ringway-set K=V   the same for ringway (repeatable, both)
  --proxy-cpu-quota P cap each proxy (its whole process tree) at P% of one CPU with a
                      cgroup (v1 cpu or v2 cpu.max), so that the proxy, not the client,
                      is the bottleneck of a scenario the client cannot saturate
                      (tls-newconn on two cores); rates then compare at equal CPU

Ports (env): BACKEND_PORT=$BACKEND_PORT RINGWAY_PORT=$RINGWAY_PORT NGINX_PORT=$NGINX_PORT HAPROXY_PORT=$HAPROXY_PORT BASELINE_PORT=$BASELINE_PORT
Split layout CPUs (env): LOAD_CPUS=$LOAD_CPUS (wrk + backend), PROXY_CPUS (default: 1..nproc-1)
EOF
}

split_csv() { local IFS=,; read -r -a "$1" <<<"$2"; }

while (($#)); do
    case $1 in
    --scenarios) split_csv SCENARIOS "$2"; shift 2 ;;
    --targets) split_csv TARGETS "$2"; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --layout)
        case $2 in
        split | unpinned) LAYOUTS=("$2") ;;
        both) LAYOUTS=(split unpinned) ;;
        *) echo "--layout: split, unpinned or both" >&2; exit 2 ;;
        esac
        shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --wrk-threads) WRK_THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-install) DO_INSTALL=0; shift ;;
    --no-build) DO_BUILD=0; shift ;;
    --backend)
        case $2 in
        nginx | fixture) BACKEND=$2 ;;
        *) echo "--backend: nginx or fixture" >&2; exit 2 ;;
        esac
        shift 2 ;;
    --generators) split_csv GENERATORS "$2"; shift 2 ;;
    --backend-bin) BACKEND_BIN=$2; shift 2 ;;
    --ringway-bin) RINGWAY_BIN=$2; shift 2 ;;
    --baseline-bin) BASELINE_BIN=$2; shift 2 ;;
    --baseline-set) BASELINE_SET+=("$2"); shift 2 ;;
    --ringway-set) RINGWAY_SET+=("$2"); shift 2 ;;
    --proxy-cpu-quota) PROXY_QUOTA=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

for s in "${SCENARIOS[@]}"; do
    [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || { echo "unknown scenario: $s" >&2; exit 2; }
done
if [[ -n $BASELINE_BIN && " ${TARGETS[*]} " != *" baseline "* ]]; then
    TARGETS+=(baseline)
fi
for t in "${TARGETS[@]}"; do
    [[ " backend ringway nginx haproxy baseline " == *" $t "* ]] || { echo "unknown target: $t" >&2; exit 2; }
done
for g in "${GENERATORS[@]}"; do
    [[ $g == wrk || $g == oha ]] || { echo "unknown generator: $g (wrk, oha)" >&2; exit 2; }
done

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- process bookkeeping ----------------------------------------------------
STARTED_PIDS=()
WORK=$(mktemp -d /tmp/ringway-compare.XXXXXX)
chmod 755 "$WORK"

# All descendants of a PID (children first found by ppid), one per line.
descendants() {
    local kids k
    kids=$(ps -o pid= --ppid "$1" 2>/dev/null || true)
    for k in $kids; do
        echo "$k"
        descendants "$k"
    done
}

# TERM a process and its tree, wait up to 3 s, then KILL what is left.
stop_tree() {
    local pid=$1 p tree i
    kill -0 "$pid" 2>/dev/null || return 0
    tree="$pid $(descendants "$pid" | tr '\n' ' ')"
    for p in $tree; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 30; i++)); do
        local alive=0
        for p in $tree; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in $tree; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${STARTED_PIDS[@]}"; do stop_tree "$pid"; done
    [[ -n ${CAP_DIR:-} && -d $CAP_DIR ]] && rmdir "$CAP_DIR" 2>/dev/null
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

forget_pid() {
    local keep=() p
    for p in "${STARTED_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    STARTED_PIDS=("${keep[@]}")
}

# ---- CPU quota (--proxy-cpu-quota) ------------------------------------------
CAP_DIR=
make_cap() {
    [[ -n $PROXY_QUOTA ]] || return 0
    local quota=$((PROXY_QUOTA * 1000))
    if [[ -w /sys/fs/cgroup/cpu && -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]]; then
        CAP_DIR=/sys/fs/cgroup/cpu/ringway-compare-$$
        mkdir -p "$CAP_DIR"
        echo 100000 >"$CAP_DIR/cpu.cfs_period_us"
        echo "$quota" >"$CAP_DIR/cpu.cfs_quota_us"
    elif [[ -e /sys/fs/cgroup/cgroup.controllers ]]; then
        CAP_DIR=/sys/fs/cgroup/ringway-compare-$$
        echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
        mkdir -p "$CAP_DIR"
        echo "$quota 100000" >"$CAP_DIR/cpu.max"
    else
        log "--proxy-cpu-quota: no writable cgroup cpu controller"
        exit 1
    fi
    log "proxies capped at ${PROXY_QUOTA}% of one CPU ($CAP_DIR)"
}
cap_proxy() { # cap_proxy PID: the process and its descendants (nginx workers)
    [[ -n $CAP_DIR ]] || return 0
    local p
    for p in "$1" $(descendants "$1"); do echo "$p" >"$CAP_DIR/cgroup.procs" 2>/dev/null || true; done
}

# ---- tools --------------------------------------------------------------------
install_tools() {
    local missing=() cmd pkg
    for pair in wrk:wrk nginx:nginx haproxy:haproxy gnuplot:gnuplot-nox taskset:util-linux python3:python3 ps:procps curl:curl openssl:openssl stunnel:stunnel4 redis-server:redis-server redis-cli:redis-tools; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null || missing+=("$pkg")
    done
    if [[ " ${GENERATORS[*]} " == *" oha "* ]] && ! command -v oha >/dev/null; then
        if ((DO_INSTALL)); then
            log "installing oha (cargo install oha --locked)"
            cargo install -q oha --locked || { log "cargo install oha failed"; exit 1; }
        else
            log "missing tool: oha (cargo install oha --locked)"
            exit 1
        fi
    fi
    ((${#missing[@]})) || return 0
    if ((DO_INSTALL == 0)) || [[ $(id -u) != 0 ]]; then
        log "missing tools: ${missing[*]} (install them, or run as root without --no-install)"
        exit 1
    fi
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
    ((DO_BUILD)) || return 0
    log "cargo build --release -p ringway -p ringway-backend"
    if ! (cd "$REPO" && cargo build --release -p ringway -p ringway-backend); then
        log "building ringway failed; building ringway-backend alone (ringway will be skipped if its binary is missing)"
        (cd "$REPO" && cargo build --release -p ringway-backend) || {
            log "ringway-backend does not build: nothing to measure against"
            exit 1
        }
    fi
}

install_tools
build
[[ $BACKEND == nginx || -x $BACKEND_BIN ]] || { log "no backend binary at $BACKEND_BIN"; exit 1; }

NPROC=$(nproc)
CLK_TCK=$(getconf CLK_TCK)
[[ -n $PROXY_CPUS ]] || PROXY_CPUS=$((NPROC > 1 ? 1 : 0))-$((NPROC > 1 ? NPROC - 1 : 0))

for port in "$BACKEND_PORT" "$RINGWAY_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$RINGWAY_TLS_PORT" "$NGINX_TLS_PORT" "$HAPROXY_TLS_PORT" "$STUNNEL_PORT" "$REDIS_PORT"; do
    if command -v ss >/dev/null && ss -Hltn "sport = :$port" | grep -q .; then
        log "port $port is already in use on this machine; set *_PORT to free ports"
        exit 1
    fi
done

# ---- results directory ----------------------------------------------------------
if [[ -z $OUT ]]; then
    OUT=$REPO/bench/results/$(date +%F)-$(hostname -s)
    [[ -e $OUT ]] && OUT=$OUT-$(date +%H%M%S)
fi
mkdir -p "$OUT/raw"
RUNS=$OUT/runs.tsv
printf 'layout\tscenario\ttarget\tround\tpos\twrk_file\tcpu_ticks\trss_kb\tbackend_cpu_ticks\tclk_tck\n' >"$RUNS"

write_machine_info() {
    local commit dirty
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    dirty=$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l)
    {
        echo "## Machine and command"
        echo
        echo "- date: $(date -Is)"
        echo "- host: $(hostname)"
        echo "- nproc: $NPROC"
        echo "- kernel: $(uname -srm)"
        echo "- transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
        echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "- memory: $(free -h | awk '/^Mem:/{print $2}')"
        echo "- commit: $commit ($dirty uncommitted paths)"
        echo "- wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); nginx: $(nginx -v 2>&1 | cut -d/ -f2); haproxy: $(haproxy -v | head -1 | cut -d' ' -f3)$(command -v oha >/dev/null && echo "; oha: $(oha --version | cut -d' ' -f2)")"
        echo "- backend: $([[ $BACKEND == nginx ]] && echo "nginx (one process, a fixed body from a file)" || echo "ringway-backend (fixture)"); generators: ${GENERATORS[*]}"
        echo "- settings: layout ${LAYOUTS[*]}, shards $SHARDS, rounds $ROUNDS, duration ${DURATION}s, warm-up ${WARMUP}s, wrk -t$WRK_THREADS -c$CONNECTIONS"
        echo "- split layout: proxy on CPUs $PROXY_CPUS, wrk and backend on CPUs $LOAD_CPUS"
        [[ -n $PROXY_QUOTA ]] && echo "- proxies capped at ${PROXY_QUOTA}% of one CPU (cgroup)"
        echo "- command: \`$COMMAND_LINE\`"
    } >"$OUT/machine.md"
}
write_machine_info
make_cap

# ---- /proc accounting -----------------------------------------------------------
# utime+stime (clock ticks) of a process tree; each /proc/PID/stat already
# sums all of that process's threads.
tree_ticks() {
    local total=0 p stat rest
    local -a f
    for p in "$1" $(descendants "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# VmRSS (KiB) summed over a process tree.
tree_rss() {
    local total=0 p kb
    for p in "$1" $(descendants "$1"); do
        kb=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# ---- starting things --------------------------------------------------------------
declare -A PID_OF=() PORT_OF=([backend]=$BACKEND_PORT [ringway]=$RINGWAY_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [baseline]=$BASELINE_PORT)
declare -A TLS_PORT_OF=([ringway]=$RINGWAY_TLS_PORT [nginx]=$NGINX_TLS_PORT [haproxy]=$HAPROXY_TLS_PORT)

# One certificate for every TLS listener (ECDSA P-256, signed by a bench CA that
# the proxies trust for tls-upstream), made once per run.
TLS_DIR=$WORK/tls
make_certificate() {
    [[ -e $TLS_DIR/cert.pem ]] && return 0
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout ca.key -out ca.pem -subj "/CN=bench CA"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout key.pem -out leaf.csr -subj /CN=bench.test
        printf 'subjectAltName=DNS:bench.test\nbasicConstraints=CA:FALSE\n' >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile leaf.ext -out cert.pem
        cat cert.pem key.pem >haproxy.pem
    ) >/dev/null 2>&1
}

start_stunnel() {
    cat >"$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
[backend]
accept = 127.0.0.1:${STUNNEL_PORT}
connect = 127.0.0.1:${BACKEND_PORT}
cert = ${TLS_DIR}/cert.pem
key = ${TLS_DIR}/key.pem
EOF
    "${PIN_LOAD[@]}" stunnel "$WORK/stunnel.conf" >"$WORK/stunnel.log" 2>&1 &
    PID_OF[stunnel]=$!
    STARTED_PIDS+=("$!")
    local i
    for ((i = 0; i < 50; i++)); do
        curl -sk -o /dev/null -m 1 "https://127.0.0.1:${STUNNEL_PORT}/" && return 0
        sleep 0.1
    done
    log "stunnel did not come up: $(tail -n 3 "$WORK/stunnel.log")"
    exit 1
}
is_tls_scenario() { [[ $1 == tls-* ]]; }
# auth-none / auth-key / auth-unverified / auth-sig: ringway only, the same route
# (/a/x) free, with a subscription key, free but sent the signed requests, and
# with a JDCLOUD2 signature verified per request. The signing client (LuaJIT)
# tops out near 25k req/s, so auth-sig compares with auth-unverified: the same
# client, rate and bytes, without the verification.
is_auth_scenario() { [[ $1 == auth-* ]]; }
# limit-off / limit-key / limit-cluster: the /a/x route with a subscription key,
# without a rate limit, with a per-key limit too high ever to refuse (nginx:
# limit_req on the key header; HAProxy: a stick table on it), and with that limit
# shared through Redis (ringway only: neither peer shares a limit across
# instances). The baseline target serves limit-off's config: a paired A/B.
is_limit_scenario() { [[ $1 == limit-* ]]; }
BENCH_KEY=benchkey-7f3a9c01d2e4
LAYOUT=split
# The load generator of the runs being measured, and the layout label their rows
# carry (LAYOUT for wrk, LAYOUT+oha for oha).
GEN=wrk
LABEL=split
# Scenarios that only wrk (a Lua script) or openssl can drive.
gen_supports() { # gen_supports GENERATOR SCENARIO
    [[ $1 == wrk ]] || [[ ! " routes10k backend-fail auth-sig auth-unverified tls-resume " == *" $2 "* ]]
}

# Command prefixes that pin to a CPU set in the split layout (empty when
# unpinned). Used as "${PIN_PROXY[@]}" CMD &, a simple command, so $! is the
# process itself (taskset execs it), not a subshell whose RSS would count.
PIN_LOAD=()
PIN_PROXY=()
set_layout() {
    LAYOUT=$1
    if [[ $LAYOUT == split ]]; then
        PIN_LOAD=(taskset -c "$LOAD_CPUS")
        PIN_PROXY=(taskset -c "$PROXY_CPUS")
    else
        PIN_LOAD=()
        PIN_PROXY=()
    fi
}

# Answers 200 on / within 5 s (and, given a PID, that process is still alive)?
wait_http() {
    local port=$1 pid=${2:-} i code
    for ((i = 0; i < 50; i++)); do
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

# Redis for limit-cluster, on the load CPUs like the backend: a service the
# proxy uses, not the proxy.
start_redis() {
    "${PIN_LOAD[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --protected-mode no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    PID_OF[redis]=$!
    STARTED_PIDS+=("$!")
    local i
    for ((i = 0; i < 50; i++)); do
        [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    log "redis-server did not come up: $(tail -n 3 "$WORK/redis.log")"
    exit 1
}
evalsha_calls() {
    redis-cli -p "$REDIS_PORT" info commandstats 2>/dev/null |
        awk -F'[=,]' '/^cmdstat_evalsha:/ {print $2; found=1} END {if (!found) print 0}'
}

# The nginx backend: one process (no master, so that SIGKILL in backend-fail takes
# it all, like the fixture's), a body of SIZE bytes from a file for every path.
start_nginx_backend() { # start_nginx_backend SIZE
    local dir=$WORK/backend-nginx
    mkdir -p "$dir/www"
    [[ -e $dir/www/body-$1 ]] || head -c "$1" /dev/zero | tr '\0' x >"$dir/www/body-$1"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 20000; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    open_file_cache max=16;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:${BACKEND_PORT} backlog=4096;
        location / {
            root $dir/www;
            try_files /body-$1 =404;
        }
    }
}
EOF
    "${PIN_LOAD[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        >"$WORK/backend.out" 2>"$WORK/backend.err" &
}

start_backend() { # start_backend SIZE
    if [[ $BACKEND == nginx ]]; then
        start_nginx_backend "$1"
    else
        "${PIN_LOAD[@]}" "$BACKEND_BIN" --listen "127.0.0.1:$BACKEND_PORT" --threads 1 --size "$1" \
            >"$WORK/backend.out" 2>"$WORK/backend.err" &
    fi
    PID_OF[backend]=$!
    STARTED_PIDS+=("$!")
    wait_http "$BACKEND_PORT" "${PID_OF[backend]}" || { log "backend did not come up: $(tail -n 3 "$WORK/backend.err")"; exit 1; }
}

stop_target() {
    local t=$1 pid=${PID_OF[$1]:-}
    [[ -n $pid ]] || return 0
    stop_tree "$pid"
    forget_pid "$pid"
    unset "PID_OF[$t]"
}

# Starts one proxy; returns non-zero (and says why) if it does not answer.
start_proxy() {
    local t=$1
    case $t in
    ringway)
        if [[ ! -x $RINGWAY_BIN ]]; then
            log "SKIP ringway: no binary at $RINGWAY_BIN (build failed or not written yet)"
            return 1
        fi
        "${PIN_PROXY[@]}" "$RINGWAY_BIN" run -c "$WORK/ringway.toml" >"$WORK/ringway.log" 2>&1 &
        ;;
    baseline)
        if [[ ! -x $BASELINE_BIN ]]; then
            log "SKIP baseline: no binary at '$BASELINE_BIN' (--baseline-bin)"
            return 1
        fi
        "${PIN_PROXY[@]}" "$BASELINE_BIN" run -c "$WORK/baseline.toml" >"$WORK/baseline.log" 2>&1 &
        ;;
    nginx) "${PIN_PROXY[@]}" nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/nginx.log" 2>&1 & ;;
    haproxy) "${PIN_PROXY[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 & ;;
    esac
    PID_OF[$t]=$!
    STARTED_PIDS+=("$!")
    if ! wait_http "${PORT_OF[$t]}" "${PID_OF[$t]}"; then
        log "SKIP $t: exited or not answering 200 on 127.0.0.1:${PORT_OF[$t]} within 5 s; log tail:"
        tail -n 5 "$WORK/$t.log" "$WORK/$t-error.log" 2>/dev/null | sed 's/^/    /' >&2 || true
        stop_target "$t"
        return 1
    fi
    cap_proxy "${PID_OF[$t]}"
}

# ---- scenarios --------------------------------------------------------------------
body_size() {
    case $1 in
    1k) echo 1024 ;;
    64k) echo 65536 ;;
    256k) echo 262144 ;;
    1m) echo 1048576 ;;
    100m) echo 104857600 ;;
    *) echo 64 ;;
    esac
}

# wrk arguments (besides -d, URL) for a scenario.
wrk_args() {
    local -a a=(-t"$WRK_THREADS" -c"$CONNECTIONS" --latency --timeout 5s)
    case $1 in
    newconn | tls-newconn) a+=(-H 'Connection: close') ;;
    auth-key | limit-*) a+=(-H "jdcloud-apim-subscription-key: $BENCH_KEY") ;;
    auth-sig | auth-unverified) a+=(-s "$HERE/wrk/jdsign.lua") ;;
    routes10k) a+=(-s "$HERE/wrk/routes.lua") ;;
    backend-fail) a+=(-s "$HERE/wrk/status-count.lua") ;;
    esac
    printf '%s\n' "${a[@]}"
}

run_wrk() { # run_wrk SCENARIO TARGET SECONDS OUTFILE
    local -a args
    mapfile -t args < <(wrk_args "$1")
    # In the background and waited for, so a signal to this script is handled
    # at once (bash defers traps until a foreground child exits).
    local url="http://127.0.0.1:${PORT_OF[$2]}/"
    { is_auth_scenario "$1" || is_limit_scenario "$1"; } && url="http://127.0.0.1:${PORT_OF[$2]}/a/x"
    is_tls_scenario "$1" && [[ $1 != tls-upstream ]] && url="https://127.0.0.1:${TLS_PORT_OF[$2]}/"
    if [[ $GEN == oha ]]; then
        local -a h=()
        local i
        for ((i = 0; i < ${#args[@]}; i++)); do
            [[ ${args[$i]} == -H ]] && h+=(-H "${args[$((i + 1))]}")
        done
        [[ $1 == newconn || $1 == tls-newconn ]] && h+=(--disable-keepalive)
        [[ $1 == tls-* ]] && h+=(--insecure)
        "${PIN_LOAD[@]}" "$HERE/oha.sh" "$3" "$CONNECTIONS" "$url" "${h[@]}" >"$4" 2>&1 &
    elif [[ $1 == tls-resume ]]; then
        # wrk does not resume sessions; openssl s_time -reuse does, one connection
        # after another, reported in wrk's format (loadtest/s_time.sh).
        "${PIN_LOAD[@]}" "$HERE/s_time.sh" "127.0.0.1:${TLS_PORT_OF[$2]}" "$3" >"$4" 2>&1 &
    else
        "${PIN_LOAD[@]}" wrk "${args[@]}" -d"${3}s" "$url" >"$4" 2>&1 &
    fi
    local wrk_pid=$!
    STARTED_PIDS+=("$wrk_pid")
    wait "$wrk_pid" || true
    forget_pid "$wrk_pid"
}

# In the split layout the ceiling run moves the backend onto the proxy CPUs,
# so it gets the same CPU a proxy would; it moves back afterwards.
move_backend() {
    [[ $LAYOUT == split ]] || return 0
    taskset -a -p -c "$1" "${PID_OF[backend]}" >/dev/null
}

# One counted run; appends a row to runs.tsv and prints a one-line result.
measure() { # measure SCENARIO TARGET ROUND POS
    local s=$1 t=$2 r=$3 pos=$4 pid file before after bbefore bafter rss
    pid=${PID_OF[$t]}
    file=raw/$LABEL-$s-$t-r$r.txt
    [[ $t == backend ]] && move_backend "$PROXY_CPUS"
    before=$(tree_ticks "$pid")
    bbefore=$(tree_ticks "${PID_OF[backend]}")
    local calls_before=0
    [[ -n ${PID_OF[redis]:-} ]] && calls_before=$(evalsha_calls)
    run_wrk "$s" "$t" "$DURATION" "$OUT/$file"
    after=$(tree_ticks "$pid")
    if [[ -n ${PID_OF[redis]:-} ]]; then
        local calls requests
        calls=$(($(evalsha_calls) - calls_before))
        requests=$(awk '/requests in/ {print $1}' "$OUT/$file")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$LABEL" "$s" "$t" "$r" "${requests:-0}" "$calls" >>"$OUT/redis.tsv"
        log "  $LABEL $s r$r $t: Redis EVALSHA $calls for ${requests:-0} requests"
    fi
    bafter=$(tree_ticks "${PID_OF[backend]}")
    rss=$(tree_rss "$pid")
    [[ $t == backend ]] && move_backend "$LOAD_CPUS"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$LABEL" "$s" "$t" "$r" "$pos" "$file" \
        $((after - before)) "$rss" $((bafter - bbefore)) "$CLK_TCK" >>"$RUNS"
    log "  $LABEL $s r$r $t: $(grep -E 'Requests/sec' "$OUT/$file" | tr -s ' ') $(grep -E '^ +99%' "$OUT/$file" | tr -s ' ')"
}

warm() { # warm SCENARIO TARGET
    ((WARMUP > 0)) || return 0
    local secs=$WARMUP
    [[ $2 == backend ]] && secs=$((WARMUP < 2 ? WARMUP : 2)) # nothing to warm but the page cache
    [[ $2 == backend ]] && move_backend "$PROXY_CPUS"
    run_wrk "$1" "$2" "$secs" "$WORK/warmup.txt"
    [[ $2 == backend ]] && move_backend "$LOAD_CPUS"
    return 0
}

generate_configs() { # generate_configs SCENARIO ROUTES
    ROUTES=$2
    TLS=0 TLS_UPSTREAM=0
    if is_tls_scenario "$1"; then
        make_certificate
        TLS=1
    fi
    [[ $1 == tls-upstream ]] && TLS_UPSTREAM=1
    AUTH="" LIMIT=""
    is_auth_scenario "$1" && AUTH=${1#auth-}
    if is_limit_scenario "$1"; then
        AUTH=key LIMIT=${1#limit-}
    fi
    gen_ringway "$WORK"
    # The baseline binary serves the same config on its own port — in the auth-*
    # scenarios, with the secured group free: the same client and bytes, no auth
    # (run with --baseline-bin target/release/ringway for a paired A/B).
    if [[ -n $LIMIT ]]; then
        mkdir -p "$WORK/free"
        LIMIT=off gen_ringway "$WORK/free"
        sed "s/127.0.0.1:${RINGWAY_PORT}\"/127.0.0.1:${BASELINE_PORT}\"/" "$WORK/free/ringway.toml" >"$WORK/baseline.toml"
    elif [[ -n $AUTH ]]; then
        mkdir -p "$WORK/free"
        AUTH=none gen_ringway "$WORK/free"
        sed "s/127.0.0.1:${RINGWAY_PORT}\"/127.0.0.1:${BASELINE_PORT}\"/" "$WORK/free/ringway.toml" >"$WORK/baseline.toml"
    else
        sed "s/127.0.0.1:${RINGWAY_PORT}\"/127.0.0.1:${BASELINE_PORT}\"/" "$WORK/ringway.toml" >"$WORK/baseline.toml"
    fi
    # Settings for one of the two (dotted keys at the top of the file, before any
    # table: the generated configs have no [upstream] of their own).
    local kv
    for kv in "${BASELINE_SET[@]}"; do
        printf '%s\n%s\n' "$kv" "$(cat "$WORK/baseline.toml")" >"$WORK/baseline.toml"
    done
    for kv in "${RINGWAY_SET[@]}"; do
        printf '%s\n%s\n' "$kv" "$(cat "$WORK/ringway.toml")" >"$WORK/ringway.toml"
    done
    gen_nginx "$WORK"
    gen_haproxy "$WORK"
    # Keep the configs beside the results (once per distinct route count).
    local suffix="" f
    ((ROUTES > 0)) && suffix=-$1
    mkdir -p "$OUT/configs"
    for f in ringway.toml baseline.toml nginx.conf haproxy.cfg haproxy-routes.map; do
        [[ -e $WORK/$f && ( $f != haproxy-routes.map || ROUTES -gt 0 ) ]] || continue
        cp "$WORK/$f" "$OUT/configs/${f%%.*}$suffix.${f#*.}"
    done
}

# Targets that came up for this scenario, in the configured order.
LIVE=()

start_targets() { # start_targets SCENARIO
    local t
    LIVE=()
    start_backend "$(body_size "$1")"
    [[ $1 == tls-upstream ]] && start_stunnel
    [[ $1 == limit-cluster ]] && start_redis
    for t in "${TARGETS[@]}"; do
        if is_tls_scenario "$1" && [[ $t == backend || $t == baseline ]]; then
            continue # no TLS listener: the backend is plain, a baseline may predate TLS
        elif is_auth_scenario "$1" && [[ $t != ringway && $t != baseline ]]; then
            continue # JD Cloud's key and signature schemes are ringway's alone
        elif [[ $1 == limit-cluster && $t != ringway && $t != baseline ]]; then
            continue # no peer shares a limit across instances
        elif [[ $t == backend ]]; then
            [[ $1 == backend-fail ]] || LIVE+=(backend)
        elif start_proxy "$t"; then
            LIVE+=("$t")
        fi
    done
}

stop_targets() {
    local t
    for t in ringway baseline nginx haproxy stunnel redis backend; do stop_target "$t"; done
}

# Steady-state scenario: rounds × live targets, order rotated each round.
run_steady() { # run_steady SCENARIO
    local s=$1 r i n=${#LIVE[@]} t
    declare -A warmed=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((i = 0; i < n; i++)); do
            t=${LIVE[$(((i + r - 1) % n))]}
            if [[ -z ${warmed[$t]:-} ]]; then
                warm "$s" "$t"
                warmed[$t]=1
            fi
            measure "$s" "$t" "$r" "$((i + 1))"
        done
    done
}

# backend-fail: during one short run per proxy, SIGKILL the backend at 1/3
# and start it again at 2/3; count statuses and socket errors. One round:
# it is a behaviour check, not a throughput number.
run_backend_fail() {
    local s=backend-fail secs t file pid before after wrk_pid
    secs=$((DURATION < 6 ? DURATION : 6))
    ((secs >= 3)) || secs=3
    for t in "${LIVE[@]}"; do
        [[ $t == backend ]] && continue
        file=raw/$LABEL-$s-$t-r1.txt
        pid=${PID_OF[$t]}
        before=$(tree_ticks "$pid")
        run_wrk "$s" "$t" "$secs" "$OUT/$file" &
        wrk_pid=$!
        STARTED_PIDS+=("$wrk_pid")
        sleep "$(awk -v d="$secs" 'BEGIN{print d/3}')"
        kill -KILL "${PID_OF[backend]}" 2>/dev/null || true
        wait "${PID_OF[backend]}" 2>/dev/null || true
        forget_pid "${PID_OF[backend]}"
        sleep "$(awk -v d="$secs" 'BEGIN{print d/3}')"
        start_backend "$(body_size "$s")"
        wait "$wrk_pid" || true
        forget_pid "$wrk_pid"
        after=$(tree_ticks "$pid")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$LABEL" "$s" "$t" 1 1 "$file" \
            $((after - before)) "$(tree_rss "$pid")" NA "$CLK_TCK" >>"$RUNS"
        log "  $LABEL $s $t: $(grep -E 'Non-2xx|Socket errors|^status' "$OUT/$file" | tr -s ' ' | tr '\n' ';')"
    done
}

# ---- main ---------------------------------------------------------------------------
# shellcheck source=loadtest/configs.sh
source "$HERE/configs.sh"

estimate=0
for s in "${SCENARIOS[@]}"; do
    if [[ $s == backend-fail ]]; then
        estimate=$((estimate + 3 * 6 + 5))
    else
        estimate=$((estimate + ${#TARGETS[@]} * (ROUNDS * DURATION + WARMUP + 1) + 3))
    fi
done
estimate=$((estimate * ${#LAYOUTS[@]} * ${#GENERATORS[@]}))
log "results: $OUT"
log "scenarios: ${SCENARIOS[*]}; targets: ${TARGETS[*]}; layouts: ${LAYOUTS[*]}; about $((estimate / 60)) min $((estimate % 60)) s"
log "numbers on a shared or busy machine are noise: measure on a quiet one"
T0=$SECONDS

for layout in "${LAYOUTS[@]}"; do
    set_layout "$layout"
    for s in "${SCENARIOS[@]}"; do
        log "== $LAYOUT / $s"
        generate_configs "$s" "$([[ $s == routes10k ]] && echo 9999 || echo 0)"
        start_targets "$s"
        for GEN in "${GENERATORS[@]}"; do
            LABEL=$LAYOUT
            [[ $GEN == wrk ]] || LABEL=$LAYOUT+$GEN
            if ! gen_supports "$GEN" "$s"; then
                log "SKIP $GEN for $s (it needs a wrk Lua script or openssl)"
                continue
            fi
            if [[ $s == backend-fail ]]; then
                run_backend_fail
            else
                run_steady "$s"
            fi
        done
        stop_targets
    done
done

log "done in $((SECONDS - T0)) s; summarising"
python3 "$HERE/summarize.py" "$OUT"
log "wrote $OUT/{raw.csv,summary.md,chart.svg} and raw/"
