#!/usr/bin/env bash
# s_time.sh HOST:PORT SECONDS — resumed TLS handshakes, one connection after
# another, each fetching / (openssl s_time -reuse), reported in wrk's format
# ("N requests in S s", "Requests/sec: R") so that summarize.py reads it like a
# wrk run. The first connection is a full handshake; every later one resumes its
# session. S is wall-clock time, measured here (s_time reports user CPU time).
set -euo pipefail
t0=$(date +%s.%N)
out=$(openssl s_time -connect "$1" -reuse -www / -time "$2" 2>&1)
t1=$(date +%s.%N)
n=$(sed -n 's/^\([0-9]\+\) connections in [0-9.]\+ real seconds.*/\1/p' <<<"$out" | tail -1)
grep -v '^r*$' <<<"$out" || true
if [[ -n $n ]]; then
    awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {
        s = b - a
        printf "  %d requests in %.2fs\n", n, s
        printf "Requests/sec: %.2f\n", n / s
    }'
fi
