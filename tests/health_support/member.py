"""An endpoint group member for tests/health.rs and tests/hashing.rs: Python's
http.server (HTTP/1.1, keep-alive), killed for real with SIGKILL by the tests.

  GET /health...  the status in STATUS_FILE (200 when the file is missing or empty)
  anything else   200, body NAME

Prints "listening PORT" once, then "probe" for each /health request (the tests count
probes) — nothing for other requests.
Arguments: NAME STATUS_FILE
"""
import http.server
import os
import sys

name, status_file = sys.argv[1], sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        code, body = 200, name.encode()
        if self.path.startswith("/health"):
            print("probe", flush=True)
            try:
                with open(status_file) as f:
                    code = int(f.read().strip() or "200")
            except FileNotFoundError:
                pass
            body = b"health"
        # Head and body in one write: a kill lands before or after a response,
        # seldom inside one.
        head = (
            f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}\r\n"
            f"content-length: {len(body)}\r\nx-member: {name}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
