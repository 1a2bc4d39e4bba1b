"""Python `websockets` as the client, against `sockeye serve`.

    python interop_client.py --url ws://127.0.0.1:9001 \\
        --limited-url ws://127.0.0.1:9002 \\
        --shutdown-url ws://127.0.0.1:9003 --shutdown-pid PID

Three servers, started by run.sh:
  --url           `sockeye serve` with its defaults (echo);
  --limited-url   `sockeye serve --max-message-size 1024 --max-connections 1
                  --ping-interval 0.2`;
  --shutdown-url  a `sockeye serve` that this script stops with SIGTERM
                  (--shutdown-pid) while connected: the last scenario.

Prints one line per scenario, `PASS name` or `FAIL name: reason`; exits 1 if
any failed.
"""

import argparse
import asyncio
import os
import signal
import sys
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from ping_counting import PingCounting

# Messages up to this size may come back from the echo server.
MAX_SIZE = 32 << 20
# Every scenario must finish within this many seconds.
SCENARIO_TIMEOUT = 20


class Failed(Exception):
    """A scenario's expectation was not met."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def describe(frame) -> str:
    return "no close frame" if frame is None else f"close {frame.code} {frame.reason!r}"


class CountingConnection(PingCounting, ClientConnection):
    """A client connection that counts the server's pings (heartbeat scenario)."""


def open_ws(url: str, **kwargs):
    """Connects with keepalive off (only the scenarios' own pings), and a
    limit that lets the 16 MiB echo through."""
    kwargs.setdefault("max_size", MAX_SIZE)
    return connect(url, ping_interval=None, open_timeout=5, close_timeout=5, **kwargs)


async def echo_round_trip(url: str, message, expected=None) -> None:
    """Sends `message` (a str, bytes, or a list of fragments) and expects
    `expected` (default: `message`) back, then closes normally."""
    expected = message if expected is None else expected
    async with open_ws(url) as ws:
        await ws.send(message)
        reply = await asyncio.wait_for(ws.recv(), 10)
        expect(type(reply) is type(expected), f"got a {type(reply).__name__}, sent a {type(expected).__name__}")
        expect(reply == expected, f"echo differs: {len(reply)} vs {len(expected)} items")


async def expect_failure_close(ws: ClientConnection, code: int) -> None:
    """Waits for the server to close the connection with `code`."""
    try:
        reply = await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as closed:
        expect(closed.rcvd is not None, f"no close frame from the server ({closed})")
        expect(closed.rcvd.code == code, f"expected close {code}, got {describe(closed.rcvd)}")
        return
    raise Failed(f"expected close {code}, got a message of {len(reply)} items")


async def raw_http(url: str, request: str) -> tuple[int, dict[str, str], bytes]:
    """Sends a raw HTTP request; returns the status, headers and body of the
    response (the server closes the connection after it)."""
    target = urlsplit(url)
    reader, writer = await asyncio.open_connection(target.hostname, target.port)
    try:
        writer.write(request.replace("\n", "\r\n").encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


# ---- scenarios -----------------------------------------------------------
# Each takes the parsed arguments and raises (Failed or anything else) to fail.


async def text(args):
    await echo_round_trip(args.url, "hello, sockeye")


async def binary(args):
    await echo_round_trip(args.url, bytes(range(256)) * 4)


async def utf8_multibyte(args):
    # 2-, 3- and 4-byte sequences.
    await echo_round_trip(args.url, "κόσμε · ü · € · 日本語 · 😀🦀")


async def fragmented_text(args):
    # An iterable makes websockets send one frame per item (plus an empty
    # final continuation frame).
    await echo_round_trip(args.url, ["frag", "men", "ted ", "text"], "fragmented text")


async def fragmented_binary(args):
    chunks = [bytes([i]) * 1000 for i in range(5)]
    await echo_round_trip(args.url, chunks, b"".join(chunks))


async def fragmented_utf8_split(args):
    # Fragments that split 2- and 4-byte characters: legal (§5.6 checks the
    # whole message), and the server must not judge each fragment alone.
    whole = "ü😀ü😀".encode()
    chunks = [whole[i : i + 3] for i in range(0, len(whole), 3)]
    async with open_ws(args.url) as ws:
        await ws.send(chunks, text=True)
        reply = await asyncio.wait_for(ws.recv(), 10)
        expect(reply == "ü😀ü😀", f"got {reply!r}")


async def large_16mib(args):
    payload = os.urandom(16 << 20)
    await echo_round_trip(args.url, payload)


async def ping_pong(args):
    async with open_ws(args.url) as ws:
        # The waiter resolves only on a pong with this exact payload.
        pong = await ws.ping(b"sockeye-ping-payload")
        await asyncio.wait_for(pong, 5)
        # And the connection still echoes afterwards.
        await ws.send("after ping")
        expect(await asyncio.wait_for(ws.recv(), 5) == "after ping", "no echo after the ping")


async def close_by_client(args):
    async with open_ws(args.url) as ws:
        await ws.send("bye soon")
        await ws.recv()
        await ws.close(4001, "client bye")
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            expect(closed.sent is not None and closed.sent.code == 4001, f"sent {describe(closed.sent)}")
            # The server must answer with a close frame echoing the code
            # (RFC 6455 §5.5.1), after ours: a clean close.
            expect(closed.rcvd is not None, "the server sent no close frame")
            expect(closed.rcvd.code == 4001, f"server answered {describe(closed.rcvd)}, expected 4001")
            expect(closed.rcvd_then_sent is False, "the server's close came first")
        else:
            raise Failed("recv() after close() returned a message")


async def close_normal(args):
    async with open_ws(args.url) as ws:
        await ws.close()
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            expect(closed.rcvd is not None and closed.rcvd.code == 1000, f"server answered {describe(closed.rcvd)}")


async def too_big(args):
    # The limited server accepts messages up to 1024 bytes.
    async with await connect_limited(args) as ws:
        await ws.send(b"x" * 2048)
        await expect_failure_close(ws, 1009)


async def too_big_fragmented(args):
    # Each fragment is under the limit; the message is not.
    async with await connect_limited(args) as ws:
        await ws.send([b"x" * 512] * 4)
        await expect_failure_close(ws, 1009)


async def limit_is_inclusive(args):
    # Exactly 1024 bytes is allowed.
    async with await connect_limited(args) as ws:
        await ws.send(b"y" * 1024)
        expect(await asyncio.wait_for(ws.recv(), 5) == b"y" * 1024, "1024-byte echo differs")


async def invalid_utf8(args):
    async with open_ws(args.url) as ws:
        # `text=True` with bytes sends them in a text frame unchecked.
        await ws.send(b"\xce\xba\xff", text=True)
        await expect_failure_close(ws, 1007)


async def invalid_utf8_fragmented(args):
    async with open_ws(args.url) as ws:
        # Valid first fragment, then 0xFF.
        await ws.send([b"valid start ", b"\xff then more"], text=True)
        await expect_failure_close(ws, 1007)


async def invalid_utf8_truncated(args):
    async with open_ws(args.url) as ws:
        # Every fragment could be the start of valid text, but the message
        # ends inside a 4-byte character.
        await ws.send([b"ends mid-character ", b"\xf0\x9f"], text=True)
        await expect_failure_close(ws, 1007)


async def http_426(args):
    status, headers, _ = await raw_http(args.url, "GET / HTTP/1.1\nHost: localhost\n\n")
    expect(status == 426, f"GET / answered {status}")
    expect(headers.get("upgrade", "").lower() == "websocket", f"Upgrade header: {headers.get('upgrade')!r}")


async def http_healthz(args):
    status, _, body = await raw_http(args.url, "GET /healthz HTTP/1.1\nHost: localhost\n\n")
    expect(status == 200, f"GET /healthz answered {status}")
    expect(body.strip() == b"ok", f"body {body!r}")


async def handshake_bad_version(args):
    status, headers, _ = await raw_http(
        args.url,
        "GET / HTTP/1.1\nHost: localhost\nUpgrade: websocket\nConnection: Upgrade\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 8\n\n",
    )
    expect(status == 426, f"version 8 answered {status}")
    expect(headers.get("sec-websocket-version") == "13", f"Sec-WebSocket-Version: {headers.get('sec-websocket-version')!r}")


async def handshake_rejected_503(args):
    # The limited server takes one connection; websockets must see the second
    # refused with 503.
    async with await connect_limited(args) as ws:
        try:
            async with open_ws(args.limited_url):
                raise Failed("a second connection was accepted over --max-connections 1")
        except InvalidStatus as refused:
            expect(refused.response.status_code == 503, f"refused with {refused.response.status_code}")
        # The first connection is unaffected.
        await ws.send("still here")
        expect(await asyncio.wait_for(ws.recv(), 5) == "still here", "first connection broken")


async def server_heartbeat(args):
    # The limited server pings every 0.2 s of silence; websockets answers.
    async with await connect_limited(args, create_connection=CountingConnection) as ws:
        await asyncio.sleep(1.0)
        expect(ws.pings_received >= 3, f"{ws.pings_received} pings in 1 s with --ping-interval 0.2")
        await ws.send("alive")
        expect(await asyncio.wait_for(ws.recv(), 5) == "alive", "no echo after the pings")


async def compression_declined(args):
    # websockets offers permessage-deflate by default; sockeye does not
    # implement it yet and must decline it, so messages flow uncompressed.
    async with open_ws(args.url) as ws:
        expect(
            "sec-websocket-extensions" not in {k.lower() for k in ws.response.headers.keys()},
            f"server accepted extensions: {ws.response.headers.get('Sec-WebSocket-Extensions')}",
        )
        await ws.send("plain")
        expect(await ws.recv() == "plain", "echo differs")


async def shutdown_1001(args):
    async with open_ws(args.shutdown_url) as ws:
        await ws.send("before shutdown")
        expect(await asyncio.wait_for(ws.recv(), 5) == "before shutdown", "echo differs")
        os.kill(args.shutdown_pid, signal.SIGTERM)
        try:
            reply = await asyncio.wait_for(ws.recv(), 10)
            raise Failed(f"got a message instead of a close: {reply!r}")
        except ConnectionClosed as closed:
            expect(closed.rcvd is not None and closed.rcvd.code == 1001, f"got {describe(closed.rcvd)}, expected 1001")
            # websockets answered; the server's close came first.
            expect(closed.rcvd_then_sent is True, "the close handshake did not complete")


async def connect_limited(args, **kwargs) -> ClientConnection:
    """Connects to the --max-connections 1 server, retrying while the slot of
    the previous scenario's connection is still being released."""
    for _ in range(50):
        try:
            return await open_ws(args.limited_url, **kwargs)
        except InvalidStatus as refused:
            if refused.response.status_code != 503:
                raise
            await asyncio.sleep(0.05)
    raise Failed("the limited server kept answering 503")


SCENARIOS = [
    text,
    binary,
    utf8_multibyte,
    fragmented_text,
    fragmented_binary,
    fragmented_utf8_split,
    large_16mib,
    ping_pong,
    close_by_client,
    close_normal,
    too_big,
    too_big_fragmented,
    limit_is_inclusive,
    invalid_utf8,
    invalid_utf8_fragmented,
    invalid_utf8_truncated,
    http_426,
    http_healthz,
    handshake_bad_version,
    handshake_rejected_503,
    server_heartbeat,
    compression_declined,
    # Last: it stops a server.
    shutdown_1001,
]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--limited-url", required=True)
    parser.add_argument("--shutdown-url", required=True)
    parser.add_argument("--shutdown-pid", type=int, required=True)
    args = parser.parse_args()

    failed = 0
    for scenario in SCENARIOS:
        name = scenario.__name__.replace("_", "-")
        try:
            await asyncio.wait_for(scenario(args), SCENARIO_TIMEOUT)
        except Exception as error:  # any failure is reported, not raised
            failed += 1
            reason = str(error) or type(error).__name__
            if not isinstance(error, Failed):
                reason = f"{type(error).__name__}: {reason}"
            print(f"FAIL {name}: {reason}", flush=True)
        else:
            print(f"PASS {name}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
