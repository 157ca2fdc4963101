#!/usr/bin/env python3
"""Sends N GET requests one after another on one keep-alive connection, reading
each response whole: a fixed amount of work, for instruction counts of the
gateway under callgrind (docs/benchmarks.md, "Issue 15"). Loopback only.

    loadtest/keepalive_requests.py PORT N [PATH]
"""
import socket
import sys


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    path = sys.argv[3] if len(sys.argv) > 3 else "/health"
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    buf = b""
    for _ in range(n):
        s.sendall(req)
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                sys.exit("connection closed")
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += s.recv(65536)
        buf = rest[length:]
    print(f"requests {n}")


if __name__ == "__main__":
    main()
