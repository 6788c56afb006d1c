"""The floor under `voicebot bench`'s CPU figure: the same stack doing almost nothing.

A relay takes Twilio media frames on a Starlette WebSocket (uvicorn on uvloop with
websockets' sans-I/O protocol, as `voicebot serve` runs) and forwards each one as a
20 ms Live `realtime_input` message over one TLS WebSocket per call to a sink that reads
and drops them. It parses the frame and decodes its payload, and that is all: no
resampling, no model -> caller direction, no marks, no recording, no metrics. Its CPU
per call-second is what this I/O stack alone costs on the machine, and the bridge's own
figure should be read against it.

    python -m app.dev.bench.floor sink --port P --cert-dir D     # TLS sink (prints "ready")
    python -m app.dev.bench.floor relay --port P --sink-port Q --ca D/ca.pem
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from app.dev.local_server import free_port

_HEAD = b'{"realtime_input":{"audio":{"data":"'
_TAIL = b'","mime_type":"audio/pcm;rate=16000"}}}'
_PCM_20MS_16K = bytes(640)
_STREAM_SID = "MZ" + "0" * 32
_ROOT = Path(__file__).resolve().parents[3]


# --- the two peers (each runs in its own process) -----------------------------------------


async def _sink(port: int, cert_dir: Path) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    from app.dev.fakes.live.tls import ThrowawayCA

    ca = ThrowawayCA.in_dir(cert_dir)

    async def drop(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async with serve(drop, "127.0.0.1", port, ssl=ca.server_context(), compression=None):
        print("ready", flush=True)
        await asyncio.Future()


def _relay_app(sink_url: str, ca_file: str) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket
    from websockets.asyncio.client import connect

    context = ssl.create_default_context(cafile=ca_file)

    async def relay(ws: WebSocket) -> None:
        await ws.accept()
        async with connect(sink_url, ssl=context, compression=None) as live:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                frame = orjson.loads(message.get("text") or message.get("bytes") or b"{}")
                if frame.get("event") == "media":
                    binascii.a2b_base64(frame["media"]["payload"])
                    data = binascii.b2a_base64(_PCM_20MS_16K, newline=False)
                    await live.send(_HEAD + data + _TAIL, text=True)

    return Starlette(routes=[WebSocketRoute("/ws", relay)])


def _serve_relay(port: int, sink_port: int, ca_file: str) -> None:
    import uvicorn

    app = _relay_app(f"wss://127.0.0.1:{sink_port}/", ca_file)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        log_level="warning",
        ws_per_message_deflate=False,
    )


# --- the measurement (in the bench process) -----------------------------------------------


async def _caller(url: str, seconds: float, offset: float) -> None:
    from websockets.asyncio.client import connect

    from telephony.messages import inbound_media_message

    payload = b"\xff" * 160  # 20 ms of mu-law silence
    async with connect(url, compression=None) as ws:
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
) -> dict[str, Any]:
    """Relay CPU ms per call-second for `calls` callers of `seconds` each.

    `placement` is `app.dev.bench.runner.Placement` (the relay gets the server's CPUs) and
    `cpu_seconds(pid)` reads a process's CPU time.
    """
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    sink_port, relay_port = free_port(), free_port()
    me = [sys.executable, "-m", "app.dev.bench.floor"]
    placement.for_load()
    sink = await asyncio.create_subprocess_exec(
        *me, "sink", "--port", str(sink_port), "--cert-dir", str(work / "floor-ca"),
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    relay: asyncio.subprocess.Process | None = None
    try:
        await asyncio.wait_for(_ready(sink), 30)
        with placement.for_server():
            relay = await asyncio.create_subprocess_exec(
                *me, "relay", "--port", str(relay_port), "--sink-port", str(sink_port),
                "--ca", str(work / "floor-ca" / "ca.pem"), env=env,
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
    relay = sub.add_parser("relay")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--sink-port", type=int, required=True)
    relay.add_argument("--ca", required=True)
    args = parser.parse_args(argv)
    if args.role == "sink":
        import uvloop

        uvloop.run(_sink(args.port, args.cert_dir))
    else:
        _serve_relay(args.port, args.sink_port, args.ca)
    return 0


if __name__ == "__main__":
    sys.exit(main())
