"""A Python `websockets` server for sockeye's client to run its scenarios against.

    python interop_server.py --port 9101

Any path not listed below is an echo endpoint. The path picks the behaviour:

    /echo                      echo every message back
    /fragmented                receive one message frame by frame, answer
                               "frames=N", then send the message back in the
                               same fragments
    /ping                      ping the client with a payload, wait for the
                               matching pong, then send "pong-ok"
    /heartbeat?ms=800          stay silent for `ms`, then send "pings=N": the
                               number of pings the client sent meanwhile
    /close?code=4001&reason=x  close with that code and reason
    /invalid-utf8              send a text frame that is not valid UTF-8
    /too-big?size=N&chunks=K   send a binary message of N bytes, in K fragments
    /abort                     drop the TCP connection without a close frame
    /reject                    refused with HTTP 403 (in process_request)
    /shutdown                  shut the whole server down the way a graceful
                               stop does (close 1001 to every connection);
                               the process then exits 0
    /report?key=K              send how connection `K` ended, as text:
                               "rcvd=CODE:REASON sent=CODE:REASON" ("none"
                               for a missing frame), then close

Any connection whose URL has `key=K` records how it ended under K, so that the
client can check what this side saw (e.g. that its 1009 arrived).
"""

import argparse
import asyncio
import logging
import signal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from ping_counting import PingCounting

# How connections that carried `key=K` ended, for /report.
results: dict[str, str] = {}
# Set when a result is recorded, so /report can wait for one.
result_added = asyncio.Event()
# The running server, for /shutdown.
server: Server | None = None


class CountingConnection(PingCounting, ServerConnection):
    """A server connection that counts the client's pings (/heartbeat)."""


def describe(frame) -> str:
    """A close frame (or None) as "CODE:REASON" / "none"."""
    return "none" if frame is None else f"{frame.code}:{frame.reason}"


async def wait_for_end(ws: ServerConnection) -> ConnectionClosed:
    """Reads (and drops) messages until the connection ends; returns how."""
    while True:
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            return closed


async def echo(ws: ServerConnection) -> ConnectionClosed:
    """Sends every message back until the connection ends."""
    while True:
        try:
            message = await ws.recv()
            await ws.send(message)
        except ConnectionClosed as closed:
            return closed


async def fragmented(ws: ServerConnection) -> ConnectionClosed:
    """Reports how many frames the next message came in, then sends the same
    fragments back as one fragmented message."""
    try:
        fragments = [fragment async for fragment in ws.recv_streaming()]
        # websockets yields one item per frame, the empty final one included.
        await ws.send(f"frames={len(fragments)}")
        await ws.send(fragments)
    except ConnectionClosed as closed:
        return closed
    return await echo(ws)


async def ping(ws: ServerConnection) -> ConnectionClosed:
    """Pings with a payload; websockets resolves the waiter only on a pong
    carrying the same payload."""
    try:
        pong = await ws.ping(b"sockeye-interop-ping")
        await asyncio.wait_for(pong, timeout=5)
        await ws.send("pong-ok")
    except ConnectionClosed as closed:
        return closed
    except TimeoutError:
        await ws.close(4000, "no pong within 5 s")
    return await wait_for_end(ws)


async def heartbeat(ws: ServerConnection, query: dict[str, str]) -> ConnectionClosed:
    """Stays silent while the client's heartbeat pings, then reports them."""
    await asyncio.sleep(int(query.get("ms", "800")) / 1000)
    try:
        await ws.send(f"pings={ws.pings_received}")
    except ConnectionClosed as closed:
        return closed
    return await wait_for_end(ws)


async def close_with(ws: ServerConnection, query: dict[str, str]) -> ConnectionClosed:
    await ws.close(int(query.get("code", "1000")), query.get("reason", ""))
    return await wait_for_end(ws)


async def invalid_utf8(ws: ServerConnection) -> ConnectionClosed:
    # `text=True` with bytes puts them in a text frame as they are:
    # websockets does not check UTF-8 on the way out. b"\xce\xba" is a valid
    # "κ"; 0xFF can never appear in UTF-8.
    await ws.send(b"\xce\xba\xff", text=True)
    return await wait_for_end(ws)


async def too_big(ws: ServerConnection, query: dict[str, str]) -> ConnectionClosed:
    size = int(query.get("size", "2048"))
    chunks = int(query.get("chunks", "1"))
    payload = b"x" * size
    try:
        if chunks == 1:
            await ws.send(payload)
        else:
            step = -(-size // chunks)
            await ws.send([payload[i : i + step] for i in range(0, size, step)])
    except ConnectionClosed as closed:
        return closed
    return await wait_for_end(ws)


async def report(ws: ServerConnection, query: dict[str, str]) -> None:
    """Sends the recorded end of connection `key`, waiting up to 3 s for it."""
    key = query.get("key", "")
    try:
        async with asyncio.timeout(3):
            while key not in results:
                result_added.clear()
                await result_added.wait()
        answer = results[key]
    except TimeoutError:
        answer = "missing"
    await ws.send(answer)
    await ws.close()


async def handler(ws: ServerConnection) -> None:
    url = urlsplit(ws.request.path)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    if url.path == "/report":
        return await report(ws, query)
    if url.path == "/abort":
        ws.transport.abort()
        return
    if url.path == "/shutdown":
        # What a SIGTERM handler does: stop the server, close every
        # connection with 1001 ("going away").
        assert server is not None
        server.close()
        closed = await wait_for_end(ws)
    elif url.path == "/fragmented":
        closed = await fragmented(ws)
    elif url.path == "/ping":
        closed = await ping(ws)
    elif url.path == "/heartbeat":
        closed = await heartbeat(ws, query)
    elif url.path == "/close":
        closed = await close_with(ws, query)
    elif url.path == "/invalid-utf8":
        closed = await invalid_utf8(ws)
    elif url.path == "/too-big":
        closed = await too_big(ws, query)
    else:
        closed = await echo(ws)
    if "key" in query:
        results[query["key"]] = f"rcvd={describe(closed.rcvd)} sent={describe(closed.sent)}"
        result_added.set()


def process_request(connection: ServerConnection, request):
    """Refuses /reject before the upgrade, with a body the client can check."""
    if urlsplit(request.path).path == "/reject":
        return connection.respond(403, "rejected by the interop server\n")
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", level=logging.INFO)

    global server
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        process_request=process_request,
        create_connection=CountingConnection,
        # The 16 MiB scenario: one frame of 16 MiB, in a message of 16 MiB.
        max_size=32 << 20,
        # Only the client's pings, so that /heartbeat counts just those.
        ping_interval=None,
    ) as server:
        # run.sh stops us with SIGTERM: shut down gracefully, exit 0.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.close)
        print(f"interop server listening on 127.0.0.1:{args.port}", flush=True)
        await server.serve_forever()
    print("interop server stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
