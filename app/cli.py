"""The `voicebot` command line: serve, console, demo, simulate, fake-live, bench, codec-report,
twilio."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Sequence
from typing import Any

from app.dev.bench.options import add_options as add_bench_options
from app.dev.bench.options import option_values as bench_option_values
from app.errors import ConfigError, VoicebotError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicebot", description="A Gemini Live voice agent on the phone, through Twilio."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (Twilio webhooks + Media Streams)")
    serve.add_argument("--host", help="bind address (default: HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default: PORT or 8080)")
    serve.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept requests without a valid Twilio signature (local development only)",
    )

    console = sub.add_parser(
        "console", help="the service on localhost with the web console (fake Live without a key)"
    )
    console.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")

    demo = sub.add_parser("demo", help="a whole simulated call through the real server, offline")
    demo.add_argument("--json", action="store_true", help="print one JSON object (see README)")
    demo.add_argument("--out", default="demo-output", help="where recordings and clips go")

    sim = sub.add_parser("simulate", help="call a running server the way Twilio does")
    sim.add_argument(
        "--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8080"
    )
    sim.add_argument("--audio", help="caller audio (WAV, any rate, mono or stereo)")
    sim.add_argument("--follow-up", help="a second caller utterance (WAV)")
    sim.add_argument("--calls", type=int, default=1, help="concurrent calls")
    sim.add_argument("--listen", type=float, default=8.0, help="seconds to listen after speaking")
    sim.add_argument("--out", default=".", help="where to write what each caller heard (WAV)")
    sim.add_argument("--json", action="store_true")

    fake = sub.add_parser("fake-live", help="run the local fake Gemini Live server (TLS)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9443)
    fake.add_argument("--scenario", help="scenario JSON file (default: built-in)")
    fake.add_argument("--cert-dir", help="where to write the throwaway CA (PEM)")

    bench = sub.add_parser("bench", help="measure what a call costs and what the bridge adds")
    bench.add_argument("--calls", type=int, default=10)
    bench.add_argument("--duration", type=float, default=20.0)
    bench.add_argument("--json", action="store_true")
    add_bench_options(bench)

    codec = sub.add_parser("codec-report", help="print the codec's CPU cost, delay and rejection")
    codec.add_argument("--json", action="store_true")
    codec.add_argument("--frames", type=int, default=5000, help="20 ms frames to time")

    twilio = sub.add_parser("twilio", help="Twilio account helpers")
    twilio_sub = twilio.add_subparsers(dest="twilio_command", required=True)
    _register_twilio(twilio_sub, sub)
    return parser


def _register_twilio(
    twilio_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    top: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    from app.dev import twilio_cli

    twilio_cli.register(twilio_sub, top)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"voicebot: configuration error: {exc}", file=sys.stderr)
        return 2
    except VoicebotError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "serve":
        return _serve(args)
    if command == "console":
        from app.dev.console import main as console_main

        return console_main(args.port)
    if command == "demo":
        from app.dev.demo import main as demo_main

        return demo_main(json_output=args.json, out_dir=args.out)
    if command == "simulate":
        from app.dev.simulate import main as simulate_main

        return simulate_main(args)
    if command == "fake-live":
        from app.dev.fakes.live.__main__ import main as fake_main

        argv = ["--host", args.host, "--port", str(args.port)]
        if args.scenario:
            argv += ["--scenario", args.scenario]
        if args.cert_dir:
            argv += ["--cert-dir", args.cert_dir]
        return fake_main(argv)
    if command == "bench":
        from app.dev.bench.runner import main as bench_main

        return bench_main(
            calls=args.calls,
            duration=args.duration,
            json_output=args.json,
            **bench_option_values(args),
        )
    if command == "codec-report":
        from app.dev.codec_report import main as report_main

        return report_main(["--frames", str(args.frames)] + (["--json"] if args.json else []))
    if command in ("twilio", "call"):
        from app.dev import twilio_cli
        from app.settings import load_settings

        return asyncio.run(twilio_cli.run(args, load_settings()))
    raise ConfigError(f"unknown command {command}")


def _serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, then drain calls (app/drain.py) and exit."""
    from app.call.drain import serve
    from app.logs import configure_from_settings
    from app.server import build_services, create_app
    from app.settings import load_settings

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.allow_unsigned:
        overrides["allow_unsigned"] = True
    settings = load_settings(**overrides)
    configure_from_settings(settings)
    settings.check_can_serve()
    services = build_services(settings)
    app = create_app(services)
    # Everything imported and built so far lives as long as the process: keep it out of
    # the cyclic GC's full collections, which calls' allocations would otherwise
    # trigger over and over (each a walk over every module-level object).
    gc.collect()
    gc.freeze()
    return serve(services, app)


if __name__ == "__main__":
    sys.exit(main())
