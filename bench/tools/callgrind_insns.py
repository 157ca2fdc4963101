#!/usr/bin/env python3
"""Callgrind counts per machine instruction of one function, beside its disassembly.

    valgrind --tool=callgrind --dump-instr=yes --collect-atstart=no \\
        --toggle-collect='*run_lookups*' --callgrind-out-file=cg.out \\
        target/release/examples/lookups github 1000
    bench/tools/callgrind_insns.py cg.out target/release/examples/lookups \\
        'SegmentTrie::walk$' [--per 4000]

Prints "count address instruction" for every instruction of each function whose
demangled name matches the regex (instructions never executed are left out), then
the function's total; with --per N, the total divided by N (the lookups run).
Inlined code counts in the function it was inlined into, which is what
`callgrind_annotate` does not show. Needs objdump (binutils).
"""

import argparse
import collections
import re
import subprocess


def counts(path):
    """Instruction address -> Ir, from a callgrind file written with --dump-instr=yes."""
    out = collections.Counter()
    pos = [0, 0]
    after_calls = False

    def value(tok, i):
        if tok.startswith("+"):
            return pos[i] + int(tok[1:], 0)
        if tok.startswith("-"):
            return pos[i] - int(tok[1:], 0)
        if tok == "*":
            return pos[i]
        return int(tok, 0)

    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("calls="):
                after_calls = True
                continue
            if line[0] not in "0123456789+-*":
                continue
            parts = line.split()
            pos[0] = value(parts[0], 0)
            if len(parts) > 2:
                pos[1] = value(parts[1], 1)
            # The line after calls= is the call's inclusive cost, not this
            # instruction's own.
            if after_calls:
                after_calls = False
                continue
            out[pos[0]] += int(parts[-1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("callgrind_out")
    ap.add_argument("binary")
    ap.add_argument("function", help="regex over demangled function names")
    ap.add_argument("--per", type=int, help="divide the totals by this")
    args = ap.parse_args()
    ir = counts(args.callgrind_out)
    dis = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-C", args.binary],
        capture_output=True, text=True, check=True,
    ).stdout
    name, total = None, 0

    def done():
        if name is not None:
            per = f" ({total / args.per:.1f} per)" if args.per else ""
            print(f"{total:>10} total in {name}{per}\n")

    for line in dis.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if m:
            done()
            name, total = (m.group(2), 0) if re.search(args.function, m.group(2)) else (None, 0)
            continue
        if name is None:
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if m:
            c = ir.get(int(m.group(1), 16), 0)
            total += c
            if c:
                print(f"{c:>10} {m.group(1)} {m.group(2)}")
    done()


if __name__ == "__main__":
    main()
