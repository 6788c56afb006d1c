"""The options `voicebot bench` and `python -m app.dev.bench.runner` share.

Apart from `app.dev.bench.runner` so that building the CLI's parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
from typing import Any


def parse_sweep(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--sweep takes call counts like 5,10,20, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError("--sweep takes call counts >= 1, like 5,10,20")
    return counts


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options `voicebot bench` and `python -m app.dev.bench.runner` share."""
    parser.add_argument(
        "--sweep",
        type=parse_sweep,
        default=[],
        help="run once per call count (e.g. 5,10,20) and print the largest N that met the bar",
    )
    parser.add_argument(
        "--live-client",
        choices=["direct", "sdk"],
        help="the server's Live client (LIVE_CLIENT); default: the server's setting",
    )
    parser.add_argument(
        "--scenario",
        choices=["conversational", "continuous"],
        default="conversational",
        help="conversational: turns with barge-in; continuous: caller and agent both talk "
        "for the whole call, one 20 ms frame each way every 20 ms (app/dev/bench/scenarios.py)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the floor: a bare relay on the same stack doing the scenario's "
        "I/O and nothing else, same N and duration (app/dev/bench/floor.py)",
    )
    parser.add_argument(
        "--floor-stack",
        choices=["uvicorn", "websockets"],
        default="uvicorn",
        help="the floor relay's server: uvicorn + Starlette as `voicebot serve` runs "
        "(default), or a plain websockets asyncio server",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the server share CPUs with the callers and fake Live (default: the server "
        "gets CPU 0 alone when there are 2 or more)",
    )


def option_values(ns: argparse.Namespace) -> dict[str, Any]:
    return {
        "sweep": ns.sweep,
        "live_client": ns.live_client,
        "pin": ns.pin,
        "floor": ns.floor,
        "scenario": ns.scenario,
        "floor_stack": ns.floor_stack,
    }
