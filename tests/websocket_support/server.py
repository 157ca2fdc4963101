"""A WebSocket server for tests/websocket.rs: the `websockets` library (PyPI), which
nobody here wrote, on 127.0.0.1 port 0.

Paths:
  /echo...      every message back, as it came (text or binary)
  /close...     on the first message, close with code 4001 "bye"
  /push/N       N text messages "msg i", then wait for the client to close
  /refuse...    no upgrade: 403

Prints "listening PORT" once, then "ended PATH CODE" for each connection (CODE is
the close code the server saw: 1006 when the peer vanished without a close frame).
Arguments: ping interval in seconds (0: no pings from the server); then, for TLS,
a certificate and key file.
"""
import asyncio
import ssl
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def handler(ws):
    path = ws.request.path
    try:
        if path.startswith("/echo"):
            async for msg in ws:
                await ws.send(msg)
        elif path.startswith("/close"):
            await ws.recv()
            await ws.close(4001, "bye")
        elif path.startswith("/push/"):
            for i in range(int(path.split("/")[2])):
                await ws.send(f"msg {i}")
            await ws.wait_closed()
    except ConnectionClosed:
        pass
    print(f"ended {path} {ws.close_code}", flush=True)


def process_request(connection, request):
    if request.path.startswith("/refuse"):
        return connection.respond(403, "refused by the server\n")
    return None


async def main():
    ping = float(sys.argv[1]) if len(sys.argv) > 1 else 0
    tls = None
    if len(sys.argv) > 3:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_request=process_request,
        max_size=1 << 24,
        compression=None,
        ping_interval=ping or None,
        ping_timeout=ping * 2 or None,
        ssl=tls,
        backlog=1024,
    ) as server:
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()


asyncio.run(main())
