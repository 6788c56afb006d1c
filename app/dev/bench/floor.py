"""The floor under `voicebot bench`'s CPU figure: the same stack doing almost nothing.

A relay takes Twilio media frames on a WebSocket and forwards each one as a 20 ms Live
`realtime_input` message over one TLS WebSocket per call to a sink. It parses the frame
and decodes its payload, and that is all: no resampling, no marks, no pacing, no
recording, no metrics. Two-way (the continuous scenario's workload), the sink also sends
a 20 ms Live audio message every 20 ms per call (after a 100 ms lead, as the fake Live
server does), and the relay turns each one into one Twilio media message: JSON parse,
base64 decode, 160 bytes re-encoded into Twilio JSON, one send.

The relay's server is either the one `voicebot serve` runs (uvicorn on uvloop, Starlette,
websockets' sans-I/O protocol) or a plain `websockets` asyncio server on uvloop: its CPU
per call-second is what that I/O stack alone costs on the machine, and the bridge's own
figure should be read against it.

    python -m app.dev.bench.floor sink --port P --cert-dir D [--two-way]  # prints "ready"
    python -m app.dev.bench.floor relay --port P --sink-port Q --ca D/ca.pem [--stack S]
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import contextlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from app.dev.local_server import free_port

_HEAD = b'{"realtime_input":{"audio":{"data":"'
_TAIL = b'","mime_type":"audio/pcm;rate=16000"}}}'
_PCM_20MS_16K = bytes(640)
_PCM_20MS_24K = bytes(960)
_STREAM_SID = "MZ" + "0" * 32
_LEAD_S = 0.1  # the fake Live server's continuous lead
_ROOT = Path(__file__).resolve().parents[3]
STACKS = ("uvicorn", "websockets")


# --- the two peers (each runs in its own process) -----------------------------------------


async def _sink(port: int, cert_dir: Path, two_way: bool) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    from app.dev.fakes.live.tls import ThrowawayCA
    from app.dev.fakes.live.wire import encode, server_content

    ca = ThrowawayCA.in_dir(cert_dir)
    audio = encode(server_content(audio=_PCM_20MS_24K)).encode()

    async def talk(ws: ServerConnection) -> None:
        start = time.monotonic() - _LEAD_S
        for k in range(1 << 62):
            delay = start + k * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(audio)

    async def serve_call(ws: ServerConnection) -> None:
        talking: asyncio.Task[None] | None = None
        try:
            async for _ in ws:
                if two_way and talking is None:
                    talking = asyncio.create_task(talk(ws))
        finally:
            if talking is not None:
                talking.cancel()

    async with serve(serve_call, "127.0.0.1", port, ssl=ca.server_context(), compression=None):
        print("ready", flush=True)
        await asyncio.Future()


async def _relay_call(
    sink_url: str,
    context: ssl.SSLContext,
    receive: Callable[[], Awaitable[str | bytes | None]],
    send: Callable[[str], Awaitable[None]],
) -> None:
    """One call: caller frames up to the sink, the sink's audio down as Twilio media."""
    from websockets.asyncio.client import ClientConnection, connect

    async def downlink(live: ClientConnection) -> None:
        async for message in live:
            content = orjson.loads(message)["serverContent"]
            pcm = binascii.a2b_base64(content["modelTurn"]["parts"][0]["inlineData"]["data"])
            payload = binascii.b2a_base64(pcm[:160], newline=False).decode()
            media = {"event": "media", "streamSid": _STREAM_SID, "media": {"payload": payload}}
            await send(orjson.dumps(media).decode())

    async with connect(sink_url, ssl=context, compression=None) as live:
        down = asyncio.create_task(downlink(live))
        try:
            while (raw := await receive()) is not None:
                frame = orjson.loads(raw)
                if frame.get("event") == "media":
                    binascii.a2b_base64(frame["media"]["payload"])
                    data = binascii.b2a_base64(_PCM_20MS_16K, newline=False)
                    await live.send(_HEAD + data + _TAIL, text=True)
        finally:
            down.cancel()


def _relay_app(sink_url: str, ca_file: str) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    context = ssl.create_default_context(cafile=ca_file)

    async def relay(ws: WebSocket) -> None:
        await ws.accept()

        async def receive() -> str | bytes | None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            data: str | bytes = message.get("text") or message.get("bytes") or b"{}"
            return data

        with contextlib.suppress(Exception):  # a caller hanging up ends its relay
            await _relay_call(sink_url, context, receive, ws.send_text)

    return Starlette(routes=[WebSocketRoute("/ws", relay)])


def _serve_relay(port: int, sink_port: int, ca_file: str, stack: str) -> None:
    sink_url = f"wss://127.0.0.1:{sink_port}/"
    if stack == "websockets":
        import uvloop

        uvloop.run(_serve_plain_relay(port, sink_url, ca_file))
        return
    import uvicorn

    uvicorn.run(
        _relay_app(sink_url, ca_file),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        log_level="warning",
        ws_per_message_deflate=False,
    )


async def _serve_plain_relay(port: int, sink_url: str, ca_file: str) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    context = ssl.create_default_context(cafile=ca_file)

    async def relay(ws: ServerConnection) -> None:
        async def receive() -> str | bytes | None:
            try:
                return await ws.recv()
            except ConnectionClosed:
                return None

        async def send(text: str) -> None:
            await ws.send(text)

        with contextlib.suppress(Exception):  # a caller hanging up ends its relay
            await _relay_call(sink_url, context, receive, send)

    async with serve(relay, "127.0.0.1", port, compression=None, max_size=1 << 20):
        await asyncio.Future()


# --- the measurement (in the bench process) -----------------------------------------------


async def _caller(url: str, seconds: float, offset: float) -> None:
    from websockets.asyncio.client import connect

    from telephony.messages import inbound_media_message

    payload = b"\xff" * 160  # 20 ms of mu-law silence
    async with connect(url, compression=None) as ws:
        drain = asyncio.create_task(_drain(ws))
        loop = asyncio.get_running_loop()
        t0 = loop.time() + offset
        for k in range(int(seconds * 50)):
            delay = t0 + k * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            message = inbound_media_message(
                _STREAM_SID, k + 1, chunk=k + 1, timestamp_ms=20 * k, payload=payload
            )
            await ws.send(message)
        drain.cancel()


async def _drain(ws: Any) -> None:
    """Read (and drop) what the relay sends back, as Twilio would."""
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def _ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while (line := await proc.stdout.readline()) and line.strip() != b"ready":
        pass
    if proc.returncode is not None or not line:
        raise RuntimeError("the floor's sink did not start")


async def run_floor(
    calls: int,
    seconds: float,
    work: Path,
    placement: Any,
    cpu_seconds: Callable[[int], float],
    *,
    two_way: bool = False,
    stack: str = "uvicorn",
    prefix: Sequence[str] = (),
) -> dict[str, Any]:
    """Relay CPU ms per call-second for `calls` callers of `seconds` each.

    `placement` is `app.dev.bench.runner.Placement` (the relay gets the server's CPUs) and
    `cpu_seconds(pid)` reads a process's CPU time. `prefix` replaces the relay's
    interpreter command (a profiler in front of it; the CPU figure is then the prefix's).
    """
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    sink_port, relay_port = free_port(), free_port()
    me = [sys.executable, "-m", "app.dev.bench.floor"]
    placement.for_load()
    sink = await asyncio.create_subprocess_exec(
        *me, "sink", "--port", str(sink_port), "--cert-dir", str(work / "floor-ca"),
        *(["--two-way"] if two_way else []), stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    relay: asyncio.subprocess.Process | None = None
    try:
        await asyncio.wait_for(_ready(sink), 30)
        with placement.for_server():
            relay = await asyncio.create_subprocess_exec(
                *(prefix or me[:1]), *me[1:], "relay",
                "--port", str(relay_port), "--sink-port", str(sink_port),
                "--ca", str(work / "floor-ca" / "ca.pem"), "--stack", stack, env=env,
            )  # fmt: skip
        await _wait_port(relay_port, relay)
        url = f"ws://127.0.0.1:{relay_port}/ws"
        before = cpu_seconds(relay.pid)
        await asyncio.gather(*(_caller(url, seconds, 0.02 * i / calls) for i in range(calls)))
        used = cpu_seconds(relay.pid) - before
    finally:
        for proc in (relay, sink):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 10)
    return {
        "calls": calls,
        "seconds": seconds,
        "stack": stack,
        "workload": "caller frames up, 20 ms Live audio down" if two_way else "caller frames up",
        "cpu_ms_per_call_second": round(used / (calls * seconds) * 1000, 3),
    }


async def _wait_port(port: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if proc.returncode is not None:
            raise RuntimeError(f"the floor's relay exited during start-up ({proc.returncode})")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the floor's relay did not start within 15 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.dev.bench.floor")
    sub = parser.add_subparsers(dest="role", required=True)
    sink = sub.add_parser("sink")
    sink.add_argument("--port", type=int, required=True)
    sink.add_argument("--cert-dir", type=Path, required=True)
    sink.add_argument("--two-way", action="store_true")
    relay = sub.add_parser("relay")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--sink-port", type=int, required=True)
    relay.add_argument("--ca", required=True)
    relay.add_argument("--stack", choices=STACKS, default="uvicorn")
    args = parser.parse_args(argv)
    if args.role == "sink":
        import uvloop

        uvloop.run(_sink(args.port, args.cert_dir, args.two_way))
    else:
        _serve_relay(args.port, args.sink_port, args.ca, args.stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
