"""WebSocket echo upstream for the conformance suite (the `websockets` package).

Listens on 127.0.0.1 with a port chosen by the OS and prints `{"port": N}` as
its first line on stdout. On each connection it first sends one text message,
a JSON object with the request path (including the query) exactly as the
handshake's request line gave it, and the handshake's headers; then it echoes
every message back unchanged, text as text and binary as binary.
"""

import asyncio
import json
import signal
import sys

from websockets.asyncio.server import serve

MAX_MESSAGE = 8 * 1024 * 1024


async def handler(ws):
    hello = {
        "path": ws.request.path,
        "headers": [[k, v] for k, v in ws.request.headers.raw_items()],
    }
    await ws.send(json.dumps(hello))
    async for message in ws:
        await ws.send(message)


async def main():
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(handler, "127.0.0.1", 0, max_size=MAX_MESSAGE, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        sys.stdout.write(json.dumps({"port": port}) + "\n")
        sys.stdout.flush()
        await stop


if __name__ == "__main__":
    asyncio.run(main())
