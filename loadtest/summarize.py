#!/usr/bin/env python3
"""Turn one compare.sh run into raw.csv, summary.md and chart.svg.

Question answered: for each scenario, how does ringway compare with nginx and
HAProxy (and with the backend alone, the ceiling) in throughput, tail latency
and CPU spent per request?

Input (written by compare.sh into the results directory):
  runs.tsv   one line per counted run, tab-separated, with a header line:
             layout scenario target round pos wrk_file cpu_ticks rss_kb
             backend_cpu_ticks clk_tck
  raw/*.txt  wrk's output for each run (`--latency`; the backend-fail scenario
             adds `status NNN: COUNT` lines from status-count.lua)
  machine.md machine description, pasted into summary.md

Output: raw.csv (one row per run), summary.md (medians per scenario x target
and the ringway ratios), chart.dat + chart.gp, and chart.svg if gnuplot exists.

Stdlib only. Usage:
  summarize.py RESULTS_DIR          # everything
  summarize.py --wrk FILE           # print one wrk file's parsed fields
"""

import csv
import math
import os
import re
import shutil
import statistics
import subprocess
import sys

TARGET_ORDER = ["backend", "ringway", "baseline", "nginx", "haproxy"]
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}

RAW_FIELDS = [
    "layout", "scenario", "target", "round", "pos", "requests", "seconds",
    "rps", "p50_ms", "p99_ms", "non2xx", "err_connect", "err_read",
    "err_write", "err_timeout", "statuses", "cpu_s", "cpu_us_per_req",
    "rss_kib", "backend_cpu_s", "wrk_file",
]


def duration_ms(value, unit):
    return float(value) * UNIT_MS[unit]


def parse_wrk(text):
    """Fields of one wrk --latency output; missing ones are None or 0."""
    out = {"requests": None, "seconds": None, "rps": None, "p50_ms": None,
           "p99_ms": None, "non2xx": 0, "err_connect": 0, "err_read": 0,
           "err_write": 0, "err_timeout": 0, "statuses": ""}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = duration_ms(m.group(2), m.group(3)) / 1000.0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s|m|h)\s*$" % pct, text, re.M)
        if m:
            out[key] = duration_ms(m.group(1), m.group(2))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        for key, val in zip(("err_connect", "err_read", "err_write", "err_timeout"), m.groups()):
            out[key] = int(val)
    statuses = re.findall(r"^status (\d+): (\d+)$", text, re.M)
    out["statuses"] = " ".join("%s:%s" % s for s in sorted(statuses))
    return out


def load_runs(results):
    rows = []
    with open(os.path.join(results, "runs.tsv")) as f:
        for rec in csv.DictReader(f, delimiter="\t"):
            path = os.path.join(results, rec["wrk_file"])
            try:
                with open(path) as wf:
                    parsed = parse_wrk(wf.read())
            except OSError:
                parsed = parse_wrk("")
            tck = float(rec["clk_tck"]) or 100.0
            cpu_s = int(rec["cpu_ticks"]) / tck if rec["cpu_ticks"] not in ("", "NA") else None
            bcpu = int(rec["backend_cpu_ticks"]) / tck if rec["backend_cpu_ticks"] not in ("", "NA") else None
            req = parsed["requests"]
            row = dict(rec)
            row.update(parsed)
            row["cpu_s"] = cpu_s
            row["cpu_us_per_req"] = (cpu_s * 1e6 / req) if (cpu_s is not None and req) else None
            row["rss_kib"] = int(rec["rss_kb"]) if rec["rss_kb"] not in ("", "NA") else None
            row["backend_cpu_s"] = bcpu
            rows.append(row)
    return rows


def write_raw_csv(results, rows):
    with open(os.path.join(results, "raw.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RAW_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: fmt_csv(r.get(k)) for k in RAW_FIELDS})


def fmt_csv(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "%.4f" % v
    return v


def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ordered(items, order):
    known = [x for x in order if x in items]
    return known + sorted(x for x in items if x not in order)


def group(rows):
    """{(layout, scenario): {target: aggregate}} in first-seen order."""
    groups = {}
    for r in rows:
        g = groups.setdefault((r["layout"], r["scenario"]), {})
        g.setdefault(r["target"], []).append(r)
    agg = {}
    for key, by_target in groups.items():
        agg[key] = {}
        for target, runs in by_target.items():
            agg[key][target] = {
                "n": len(runs),
                "rps": median(r["rps"] for r in runs),
                "p50_ms": median(r["p50_ms"] for r in runs),
                "p99_ms": median(r["p99_ms"] for r in runs),
                "cpu_us_per_req": median(r["cpu_us_per_req"] for r in runs),
                "rss_kib": median(r["rss_kib"] for r in runs),
                "non2xx": sum(r["non2xx"] for r in runs),
                "sock_err": sum(r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"] for r in runs),
                "statuses": "; ".join(r["statuses"] for r in runs if r["statuses"]),
                "requests": sum(r["requests"] or 0 for r in runs),
            }
    return agg


def num(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return "{:,.0f}".format(v)
    return "{:,.{d}f}".format(v, d=digits)


def ratio(a, b):
    if a is None or b in (None, 0):
        return "—"
    return "%.2f×" % (a / b)


def summary_md(results, agg, machine):
    lines = ["# ringway vs nginx vs HAProxy", ""]
    lines += ["Medians over rounds. `ceiling` = share of the backend's own req/s",
              "(the backend served directly, same layout). CPU is user+system time of the",
              "target's whole process tree during the counted run, divided by the requests",
              "served. Errors are summed over rounds (non-2xx/3xx responses; socket",
              "errors = connect+read+write+timeout).", ""]
    for (layout, scenario), by_target in agg.items():
        lines.append("## %s — layout `%s`" % (scenario, layout))
        lines.append("")
        lines.append("| target | runs | req/s | ceiling | p50 ms | p99 ms | CPU µs/req | RSS MiB | non-2xx | sock err |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ceiling = by_target.get("backend", {}).get("rps")
        for t in ordered(by_target, TARGET_ORDER):
            a = by_target[t]
            share = "%.0f%%" % (100 * a["rps"] / ceiling) if (ceiling and a["rps"] is not None) else "—"
            rss = a["rss_kib"] / 1024 if a["rss_kib"] is not None else None
            lines.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, a["n"], num(a["rps"]), share, num(a["p50_ms"], 3), num(a["p99_ms"], 3),
                num(a["cpu_us_per_req"], 1), num(rss, 1), num(a["non2xx"]), num(a["sock_err"])))
        statuses = [(t, by_target[t]["statuses"]) for t in ordered(by_target, TARGET_ORDER) if by_target[t]["statuses"]]
        if statuses:
            lines.append("")
            lines.append("Response statuses per run (status:count):")
            lines.append("")
            for t, s in statuses:
                lines.append("- %s: %s" % (t, s))
        lines.append("")
    # Ratio table.
    lines.append("## ringway ratios")
    lines.append("")
    lines.append("req/s: higher is better; p99 and CPU/request: lower is better.")
    lines.append("")
    lines.append("| scenario | layout | req/s ÷ nginx | req/s ÷ haproxy | p99 ÷ nginx | p99 ÷ haproxy | CPU/req ÷ nginx | CPU/req ÷ haproxy |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for (layout, scenario), by_target in agg.items():
        rw = by_target.get("ringway")
        ng = by_target.get("nginx", {})
        hp = by_target.get("haproxy", {})
        if rw is None:
            lines.append("| %s | %s | ringway not run | | | | | |" % (scenario, layout))
            continue
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            scenario, layout,
            ratio(rw["rps"], ng.get("rps")), ratio(rw["rps"], hp.get("rps")),
            ratio(rw["p99_ms"], ng.get("p99_ms")), ratio(rw["p99_ms"], hp.get("p99_ms")),
            ratio(rw["cpu_us_per_req"], ng.get("cpu_us_per_req")),
            ratio(rw["cpu_us_per_req"], hp.get("cpu_us_per_req"))))
    lines.append("")
    if any("baseline" in by_target for by_target in agg.values()):
        lines.append("## ringway ÷ baseline (the `--baseline-bin` binary, same run)")
        lines.append("")
        lines.append("| scenario | layout | req/s | p99 | CPU/req |")
        lines.append("|---|---|---:|---:|---:|")
        for (layout, scenario), by_target in agg.items():
            rw, base = by_target.get("ringway"), by_target.get("baseline")
            if rw is None or base is None:
                continue
            lines.append("| %s | %s | %s | %s | %s |" % (
                scenario, layout, ratio(rw["rps"], base["rps"]),
                ratio(rw["p99_ms"], base["p99_ms"]),
                ratio(rw["cpu_us_per_req"], base["cpu_us_per_req"])))
        lines.append("")
    lines.append("![req/s and p99 per target per scenario](chart.svg)")
    lines.append("")
    lines.append(machine.rstrip())
    lines.append("")
    with open(os.path.join(results, "summary.md"), "w") as f:
        f.write("\n".join(lines))


GNUPLOT = r"""set terminal svg size 1100,800 dynamic enhanced font 'sans,11' background rgb 'white'
set output '{svg}'
set datafile separator '\t'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set xtics nomirror
set logscale y
set multiplot layout 2,1 title 'ringway vs nginx vs HAProxy (medians; log scale)'
set title 'throughput (req/s, higher is better)'
set yrange [{rps_min}:*]
plot {rps_plot}
set title 'p99 latency (ms, lower is better)'
set yrange [{p99_min}:*]
plot {p99_plot}
unset multiplot
"""


def write_chart(results, agg):
    """chart.dat has two blocks (req/s, p99), columns = targets."""
    targets = ordered({t for by_t in agg.values() for t in by_t}, TARGET_ORDER)
    layouts = {layout for layout, _ in agg}
    rows = [(scen + ("/" + layout if len(layouts) > 1 else ""), by_t) for (layout, scen), by_t in agg.items()]
    blocks = []
    lows = {}
    for key in ("rps", "p99_ms"):
        vals = [by_t.get(t, {}).get(key) for _, by_t in rows for t in targets]
        vals = [v for v in vals if v]
        # Log-scale bars need a floor below the smallest value to be visible.
        lows[key] = 10 ** math.floor(math.log10(min(vals) / 2)) if vals else 1
        block = ["label\t" + "\t".join(targets)]
        for label, by_t in rows:
            cells = []
            for t in targets:
                v = by_t.get(t, {}).get(key)
                cells.append("%.4f" % v if v else "NaN")
            block.append(label + "\t" + "\t".join(cells))
        blocks.append("\n".join(block))
    dat = os.path.join(results, "chart.dat")
    with open(dat, "w") as f:
        f.write("\n\n\n".join(blocks) + "\n")

    def plot(index):
        parts = []
        for i, t in enumerate(targets):
            xt = ":xtic(1)" if i == 0 else ""
            parts.append("'chart.dat' index %d using %d%s title columnheader(%d)" % (index, i + 2, xt, i + 2))
        return ", \\\n     ".join(parts)

    gp = os.path.join(results, "chart.gp")
    with open(gp, "w") as f:
        f.write(GNUPLOT.format(svg="chart.svg", rps_plot=plot(0), p99_plot=plot(1),
                               rps_min=lows["rps"], p99_min=lows["p99_ms"]))
    if shutil.which("gnuplot"):
        r = subprocess.run(["gnuplot", "chart.gp"], cwd=results, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write("gnuplot failed:\n" + r.stderr)
    else:
        sys.stderr.write("gnuplot not found: chart.gp written, chart.svg not drawn\n")


def print_table(agg):
    """The terminal version of summary.md's main tables."""
    print("%-12s %-9s %-8s %10s %9s %9s %11s %8s %8s %8s" % (
        "scenario", "layout", "target", "req/s", "p50 ms", "p99 ms", "CPU us/req", "RSS MiB", "non2xx", "sockerr"))
    for (layout, scenario), by_target in agg.items():
        for t in ordered(by_target, TARGET_ORDER):
            a = by_target[t]
            rss = a["rss_kib"] / 1024 if a["rss_kib"] is not None else None
            print("%-12s %-9s %-8s %10s %9s %9s %11s %8s %8s %8s" % (
                scenario, layout, t, num(a["rps"]), num(a["p50_ms"], 3), num(a["p99_ms"], 3),
                num(a["cpu_us_per_req"], 1), num(rss, 1), num(a["non2xx"]), num(a["sock_err"])))


def main(argv):
    if len(argv) == 3 and argv[1] == "--wrk":
        with open(argv[2]) as f:
            for k, v in parse_wrk(f.read()).items():
                print("%s=%s" % (k, v))
        return 0
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    results = argv[1]
    rows = load_runs(results)
    write_raw_csv(results, rows)
    agg = group(rows)
    machine = ""
    mpath = os.path.join(results, "machine.md")
    if os.path.exists(mpath):
        with open(mpath) as f:
            machine = f.read()
    summary_md(results, agg, machine)
    if agg:
        write_chart(results, agg)
    print_table(agg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
