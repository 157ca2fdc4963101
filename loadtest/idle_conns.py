#!/usr/bin/env python3
"""RSS of a proxy holding N idle keep-alive client connections.

Opens N connections to ADDR (loopback only), sends one keep-alive request on
each and reads its response, then holds them all idle and reports the
proxy's VmRSS (summed over its process tree) before and after (once the last
connection has been idle --hold seconds), and the difference per connection. Bounded: gives up after --timeout seconds.

    loadtest/idle_conns.py --pid PID --addr 127.0.0.1:18080 -n 10000 --path /health
"""
import argparse
import os
import resource
import selectors
import socket
import sys
import time


def tree_rss_kib(pid):
    """VmRSS of pid and its children, in KiB."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout", type=float, default=60.0)
    # ringway parks a keep-alive connection idle for 1 s (src/downstream/mod.rs,
    # PARK_AFTER), and its allocator gives the memory back a second or two later
    # (runtime/shard_thread.rs, nudge_allocator); the RSS is read after every
    # connection has been idle this long.
    ap.add_argument("--hold", type=float, default=5.0)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        sys.exit("loopback addresses only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    deadline = time.time() + a.timeout
    before = tree_rss_kib(a.pid)
    req = f"GET {a.path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()
    socks = []
    sel = selectors.DefaultSelector()
    pending = 0
    for i in range(a.n):
        s = socket.create_connection((host, int(port)))
        s.setblocking(False)
        s.send(req)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
        pending += 1
        # Keep the number of unanswered requests bounded.
        while pending > 512 or (i == a.n - 1 and pending > 0):
            if time.time() > deadline:
                sys.exit("timed out waiting for responses")
            for key, _ in sel.select(timeout=1):
                data = key.fileobj.recv(65536)
                key.data.extend(data)
                if b"\r\n\r\n" in key.data or not data:
                    sel.unregister(key.fileobj)
                    pending -= 1
    time.sleep(a.hold)
    after = tree_rss_kib(a.pid)
    per = (after - before) * 1024 / a.n
    print(f"connections {a.n}  rss_before_kib {before}  rss_after_kib {after}  bytes_per_connection {per:.0f}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
