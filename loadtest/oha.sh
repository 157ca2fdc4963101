#!/usr/bin/env bash
# oha.sh — drive load with oha and report it in wrk's format, so that compare.sh's
# summary reads either generator the same way (loadtest/summarize.py parses
# "N requests in Ts", "Requests/sec:", the --latency percentiles, "Non-2xx or 3xx
# responses:" and "Socket errors:").
#
#   loadtest/oha.sh SECONDS CONNECTIONS URL [-H 'Name: value' ...]
#
# oha (https://github.com/hatoo/oha; `cargo install oha --locked`) keeps connections
# alive like wrk; its tokio runtime gets one worker thread, as wrk runs with -t1.
# Requests still in flight at the deadline are not counted (wrk does the same);
# oha lists them as "aborted due to deadline", which is not an error here.
set -euo pipefail
(($# >= 3)) || { echo "usage: $0 SECONDS CONNECTIONS URL [-H 'k: v' ...]" >&2; exit 2; }
secs=$1 conns=$2 url=$3
shift 3
command -v oha >/dev/null || { echo "oha not found (cargo install oha --locked)" >&2; exit 1; }
json=$(mktemp /tmp/ringway-oha.XXXXXX)
trap 'rm -f "$json"' EXIT
oha --no-tui --worker-threads "${OHA_THREADS:-1}" -z "${secs}s" -c "$conns" \
    --output-format json -o "$json" "$@" "$url" >/dev/null
python3 - "$json" "$conns" "$url" <<'PY'
import json, sys

d = json.load(open(sys.argv[1]))
s = d["summary"]
codes = {int(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
errors = {k: v for k, v in (d.get("errorDistribution") or {}).items() if k != "aborted due to deadline"}
done = sum(codes.values())
pct = d.get("latencyPercentiles") or {}


def ms(seconds):
    return "%.2fms" % (1000 * (seconds or 0))


print("Running %.0fs test @ %s (oha)" % (s["total"], sys.argv[3]))
print("  1 threads and %s connections" % sys.argv[2])
print("  Latency Distribution")
for name, key in (("50%", "p50"), ("75%", "p75"), ("90%", "p90"), ("99%", "p99")):
    print("  %5s   %s" % (name, ms(pct.get(key))))
print("  %d requests in %.2fs, %d bytes read" % (done, s["total"], s.get("totalData") or 0))
timeouts = sum(v for k, v in errors.items() if "timeout" in k.lower())
if errors:
    print("  Socket errors: connect 0, read %d, write 0, timeout %d" % (sum(errors.values()) - timeouts, timeouts))
bad = sum(v for c, v in codes.items() if not 200 <= c < 400)
if bad:
    print("  Non-2xx or 3xx responses: %d" % bad)
print("Requests/sec: %10.2f" % (done / s["total"] if s["total"] else 0))
for k, v in sorted(errors.items()):
    print("  oha error: %s: %d" % (k, v))
PY
