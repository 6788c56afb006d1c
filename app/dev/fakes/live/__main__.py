"""Run the fake Live server: `python -m app.dev.fakes.live --port 9443 --scenario s.json`.

Prints the base URL and the CA certificate path; point the service at them with
GEMINI_BASE_URL and SSL_CERT_FILE. With --cert-dir the CA is kept there and reused,
so SSL_CERT_FILE stays valid across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from app.dev.fakes.live.scenario import Scenario
from app.dev.fakes.live.server import FakeLiveServer


async def serve_forever(
    scenario_path: Path | None,
    host: str = "127.0.0.1",
    port: int = 9443,
    cert_dir: Path | None = None,
) -> None:
    """Serve until cancelled (Ctrl-C)."""
    scenario = Scenario.from_file(scenario_path) if scenario_path else Scenario()
    async with FakeLiveServer(scenario, host, port, cert_dir=cert_dir) as server:
        print(f"fake Live server: {server.base_url}", flush=True)
        print(f"CA certificate:   {server.ca_pem_path}", flush=True)
        print(
            f"  export GEMINI_BASE_URL={server.base_url} SSL_CERT_FILE={server.ca_pem_path}",
            flush=True,
        )
        await asyncio.Event().wait()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.dev.fakes.live", description="A local fake of the Gemini Live API."
    )
    parser.add_argument("--scenario", type=Path, help="scenario JSON (default: built-in)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9443, help="0 picks a free port")
    parser.add_argument(
        "--cert-dir", type=Path, help="keep and reuse the CA here (default: a temp dir)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(args.scenario, args.host, args.port, args.cert_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
