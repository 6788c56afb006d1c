"""`voicebot simulate`: call a running server the way Twilio does, and report."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

import httpx

from app.assets import load_clip_8k
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_calls
from app.errors import ConfigError
from app.settings import load_settings
from telephony.audiofile import load_audio_8k, write_wav


def _audio(path: str | None, default: str | None) -> Any:
    if path:
        try:
            return load_audio_8k(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot use {path}: {exc}") from None
    return load_clip_8k(default) if default else None


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    token = settings.secret("twilio_auth_token")
    if args.calls < 1:
        raise ConfigError("--calls must be at least 1")
    caller = _audio(args.audio, "caller_booking")
    follow_up = _audio(args.follow_up, None if args.audio else "caller_goodbye")
    ssl_context = settings.ssl_context() if args.url.startswith("https") else None
    options = [
        CallOptions(
            base_url=args.url.rstrip("/"),
            audio=caller,
            follow_up=follow_up,
            auth_token=token,
            listen_seconds=args.listen,
            wait_for_greeting_seconds=10.0,
            ssl_context=ssl_context,
        )
        for _ in range(args.calls)
    ]
    reports = asyncio.run(simulate_calls(options))
    admin = settings.secret("admin_token")
    records = asyncio.run(_fetch_records(args.url, admin, reports, ssl_context)) if admin else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for report in reports:
        heard = out / f"{report.call_sid}-heard.wav"
        write_wav(heard, report.heard, 8000)
        record = records.get(report.call_sid) or {}
        results.append(
            report.to_dict()
            | {
                "heard_wav": str(heard),
                "transcript": record.get("transcript"),
                "tool_calls": record.get("tool_calls"),
                "end_reason": record.get("end_reason"),
            }
        )
    summary = _summary(reports)
    if args.json:
        print(json.dumps({"summary": summary, "calls": results}, indent=2, default=str))
    else:
        _print(reports, results, summary)
    return 0 if summary["failed"] == 0 else 1


async def _fetch_records(
    url: str, admin_token: str, reports: list[CallReport], ssl_context: Any
) -> dict[str, dict[str, Any]]:
    """Transcripts are not part of Twilio's protocol: read them from the call records
    (`GET /calls/{sid}` with ADMIN_TOKEN), waiting briefly for the server to write them."""
    records: dict[str, dict[str, Any]] = {}
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(verify=ssl_context or True, timeout=5.0) as client:
        for report in reports:
            for _ in range(40):
                response = await client.get(
                    f"{url.rstrip('/')}/calls/{report.call_sid}", headers=headers
                )
                if response.status_code == 200:
                    records[report.call_sid] = response.json()
                    break
                if response.status_code != 404:
                    break
                await asyncio.sleep(0.25)
    return records


def _summary(reports: list[CallReport]) -> dict[str, Any]:
    latencies = [x for r in reports for x in r.response_latencies_ms if x is not None]
    firsts = [r.first_audio_ms for r in reports if r.first_audio_ms is not None]
    return {
        "calls": len(reports),
        "failed": sum(1 for r in reports if r.error),
        "first_agent_audio_ms_median": statistics.median(firsts) if firsts else None,
        "response_latency_ms_median": statistics.median(latencies) if latencies else None,
        "clears": sum(r.clears for r in reports),
        "underruns": sum(r.underruns for r in reports),
    }


def _print(
    reports: list[CallReport], results: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    for report, result in zip(reports, results, strict=True):
        status = f"error: {report.error}" if report.error else f"ended by {report.ended_by}"
        played = sum(1 for m in report.marks if m.played)
        print(f"call {report.call_sid}: {status}, {report.duration_ms / 1000:.1f} s")
        print(f"  first agent audio: {report.first_audio_ms} ms after stream start")
        latencies = ", ".join(
            "-" if x is None else f"{x:.0f}" for x in report.response_latencies_ms
        )
        print(f"  response latency (end of caller speech -> agent audio): {latencies} ms")
        print(
            f"  clears: {report.clears}, marks played/discarded: {played}/"
            f"{len(report.marks) - played}, underruns: {report.underruns}"
        )
        for line in result.get("transcript") or []:
            print(f"  [{line['at_s']:6.2f}s] {line['side']:>6}: {line['text']}")
        for tool in result.get("tool_calls") or []:
            print(f"  tool {tool['name']}({tool['args']}) -> {tool['result']}")
        print(f"  heard: {result['heard_wav']}")
    print(
        f"{summary['calls']} call(s), {summary['failed']} failed; median first audio "
        f"{summary['first_agent_audio_ms_median']} ms, median response "
        f"{summary['response_latency_ms_median']} ms"
    )
