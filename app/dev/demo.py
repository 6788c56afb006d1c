"""`voicebot demo`: one whole simulated phone call through the real server, offline.

The server, the fake Live server (unless GEMINI_API_KEY is set) and a Twilio-style
caller run on this machine; the caller speaks two bundled clips, and the demo prints
what happened. `--json` prints the same as one object; its fields are documented in
the README ("voicebot demo --json").
"""

from __future__ import annotations

import asyncio
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from app.assets import load_clip_8k
from app.dev.fakes.live.scenario import Scenario
from app.dev.fakes.twilio_caller import CallOptions, CallReport, simulate_call
from app.dev.local_stack import LocalStack, local_stack
from app.logs import configure_logging
from app.settings import load_settings
from telephony.audiofile import write_wav

DEMO_TOOLS = "end_call,transfer_call,appointments"


def demo_scenario() -> Scenario:
    text = resources.files("app.assets").joinpath("demo_scenario.json").read_text("utf-8")
    return Scenario.model_validate(json.loads(text))


async def run_demo(out_dir: Path) -> dict[str, Any]:
    real = load_settings().secret("gemini_api_key") is not None
    recordings = out_dir / "recordings"
    async with local_stack(
        None if real else demo_scenario(),
        real_gemini=real,
        env_file=".env" if real else None,
        recordings_dir=recordings,
        tools=DEMO_TOOLS,
    ) as stack:
        report = await simulate_call(
            CallOptions(
                base_url=stack.base_url,
                auth_token=stack.auth_token,
                audio=load_clip_8k("caller_booking"),
                follow_up=load_clip_8k("caller_goodbye"),
                wait_for_greeting_seconds=10.0,
                listen_seconds=6.0,
                max_seconds=90.0,
            )
        )
        # The server finishes the call (recording, record) just after the socket closes.
        record = await _wait_for_record(recordings / f"{report.call_sid}.json")
        return summarize(stack, report, record, out_dir)


async def _wait_for_record(path: Path, seconds: float = 10.0) -> dict[str, Any] | None:
    for _ in range(int(seconds / 0.05)):
        if await asyncio.to_thread(path.is_file):
            text = await asyncio.to_thread(path.read_text, "utf-8")
            data: dict[str, Any] = json.loads(text)
            return data
        await asyncio.sleep(0.05)
    return None


def summarize(
    stack: LocalStack, report: CallReport, record: dict[str, Any] | None, out_dir: Path
) -> dict[str, Any]:
    heard_path = out_dir / "caller_heard.wav"
    write_wav(heard_path, report.heard, 8000)
    record = record or {}
    tool_checks = []
    if stack.fake is not None:
        for session in stack.fake.sessions:
            tool_checks += [
                {"name": c.name, "passed": c.passed, "outcome": c.outcome}
                for c in session.tool_checks
            ]
    problems = _problems(stack, report, record, tool_checks)
    played = sum(1 for m in report.marks if m.played)
    return {
        "ok": not problems,
        "problems": problems,
        "gemini": "real" if stack.uses_real_gemini else "fake-live",
        "call_sid": report.call_sid,
        "ended_by": report.ended_by,
        "end_reason": record.get("end_reason"),
        "duration_s": round(report.duration_ms / 1000, 2),
        "transcript": [
            {"side": t["side"], "at_s": t["at_s"], "text": t["text"]}
            for t in record.get("transcript", [])
        ],
        "tool_calls": [
            {
                "name": t["name"],
                "args": t["args"],
                "result": t["result"],
                "ok": t["ok"],
                "duration_ms": round(t["duration_s"] * 1000, 1),
            }
            for t in record.get("tool_calls", [])
        ],
        "tool_checks": tool_checks,
        "latency_ms": {
            "first_agent_audio": report.first_audio_ms,
            "responses": report.response_latencies_ms,
        },
        "barge_in_clears": report.clears,
        "marks": {"played": played, "discarded": len(report.marks) - played},
        "underruns": report.underruns,
        "recording": {
            "wav": str(stack.settings.recordings_dir / f"{report.call_sid}.wav"),
            "record": str(stack.settings.recordings_dir / f"{report.call_sid}.json"),
            "status": record.get("recording", {}).get("status"),
        },
        "caller_heard_wav": str(heard_path),
    }


def _problems(
    stack: LocalStack,
    report: CallReport,
    record: dict[str, Any],
    tool_checks: list[dict[str, Any]],
) -> list[str]:
    problems = []
    if report.error:
        problems.append(f"the call failed: {report.error}")
    if report.first_audio_ms is None or not np.any(report.heard):
        problems.append("the caller heard no agent audio")
    if not record:
        problems.append("no call record was written")
    if not stack.uses_real_gemini:
        if record and record.get("end_reason") != "agent_hangup":
            problems.append(f"expected the agent to hang up, got {record.get('end_reason')}")
        problems += [
            f"tool check failed: {c['name']} ({c['outcome']})"
            for c in tool_checks
            if not c["passed"]
        ]
    return problems


def print_summary(summary: dict[str, Any]) -> None:
    print(f"voicebot demo: one simulated call, Gemini = {summary['gemini']}")
    print(
        f"  call {summary['call_sid']}: {summary['duration_s']} s, "
        f"ended by {summary['end_reason'] or summary['ended_by']}"
    )
    print("\nTranscript")
    for line in summary["transcript"]:
        who = "caller" if line["side"] == "caller" else "agent "
        print(f"  [{line['at_s']:6.2f}s] {who}: {line['text']}")
    print("\nTool calls")
    for call in summary["tool_calls"]:
        args = json.dumps(call["args"])
        result = json.dumps(call["result"])
        print(f"  {call['name']}({args}) -> {result} [{call['duration_ms']} ms]")
    if not summary["tool_calls"]:
        print("  (none)")
    latency = summary["latency_ms"]
    print("\nLatency (measured at the simulated caller)")
    print(f"  stream start -> first agent audio: {latency['first_agent_audio']} ms")
    responses = ", ".join("-" if r is None else f"{r:.0f}" for r in latency["responses"])
    print(f"  end of caller speech -> agent audio: {responses} ms")
    print(
        f"  barge-in clears: {summary['barge_in_clears']}, marks played/discarded: "
        f"{summary['marks']['played']}/{summary['marks']['discarded']}, "
        f"underruns: {summary['underruns']}"
    )
    print("\nFiles")
    print(f"  recording (stereo: caller left, agent right): {summary['recording']['wav']}")
    print(f"  call record: {summary['recording']['record']}")
    print(f"  what the caller heard: {summary['caller_heard_wav']}")
    if summary["ok"]:
        print("\nOK: the call went through end to end.")
    else:
        print("\nFAILED:\n  " + "\n  ".join(summary["problems"]))


def main(*, json_output: bool = False, out_dir: str = "demo-output") -> int:
    configure_logging("WARNING", "console", stream=sys.stderr)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = asyncio.run(run_demo(out))
    if json_output:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return 0 if summary["ok"] else 1
