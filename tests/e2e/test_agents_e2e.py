"""Issue 15 end to end: agents on numbers, the setup hook, keypad input, post-call analysis.

The real server (uvicorn) with an agents file, the fake Live server over TLS, and the
simulated Twilio caller; what each call's Live session was set up with is read from the
fake's session records, what the call left behind from its call record.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.agents.delivery import CALL_SID_HEADER, SIGNATURE_HEADER, verify
from app.dev.fakes.live.records import SessionRecord
from app.dev.fakes.twilio_caller import simulate_call
from app.dev.local_server import serving
from app.dev.local_stack import LocalStack
from tests.app.agents import sample_hooks
from tests.e2e.conftest import StackFactory, call_options, call_record
from tests.e2e.measure import tone

SALES, SUPPORT, UNKNOWN = "+15550100001", "+15550100002", "+15550109999"
GREETING = {"clip": "tone:1000:0.3"}

AGENTS = """
[agents.front-desk]
default = true
system_prompt = "You are the front desk of Example Dental."
greeting = "Greet the caller from the front desk."
voice = "Puck"
tools = ["end_call"]

[agents.sales]
numbers = ["+15550100001"]
system_prompt = "You sell for Example Dental. The caller's number is {caller_number}."
greeting = "Say: welcome to sales, {customer_name}!"
voice = "Kore"
language = "en-GB"
tools = ["end_call", "appointments"]
timezone = "Europe/London"

[agents.support]
numbers = ["+15550100002"]
system_prompt_file = "support.md"
greeting = "Say: support here."
voice = "charon"
language = "de-DE"
model = "gemini-support-model"
tools = ["end_call", "transfer_call"]
transfer_allowlist = ["+15550100500"]
dtmf = "ignore"
"""


def write_agents(tmp_path: Path, text: str = AGENTS) -> Path:
    (tmp_path / "support.md").write_text("You are Support. Speak {agent}'s language.\n")
    path = tmp_path / "agents.toml"
    path.write_text(textwrap.dedent(text))
    return path


def silence(seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.zeros(int(seconds * 8000), np.int16)


async def place_call(s: LocalStack, to: str, **options: Any) -> tuple[Any, SessionRecord]:
    """One short call to `to`; the report and the Live session it opened."""
    assert s.fake is not None
    before = len(s.fake.sessions)
    options.setdefault("wait_for_greeting_seconds", 2.0)
    options.setdefault("listen_seconds", 0.3)
    report = await simulate_call(call_options(s, silence(0.3), to_number=to, **options))
    assert report.error is None, report.error
    assert report.first_audio_ms is not None  # the caller heard the greeting
    return report, s.fake.sessions[before]


def outcomes(s: LocalStack, kind: str, outcome: str) -> float:
    """voicebot_agent_outcomes_total{kind, outcome} as /metrics serves it."""
    labels = {"kind": kind, "outcome": outcome}
    value = s.services.metrics.registry.get_sample_value("voicebot_agent_outcomes_total", labels)
    return value or 0.0


def prompt_of(session: SessionRecord) -> str:
    assert session.setup is not None
    return str(session.setup["systemInstruction"]["parts"][0]["text"])


def speech_of(session: SessionRecord) -> dict[str, Any]:
    assert session.setup is not None
    speech: dict[str, Any] = session.setup["generationConfig"]["speechConfig"]
    return speech


def tools_of(session: SessionRecord) -> list[str]:
    assert session.setup is not None
    tools = session.setup.get("tools") or [{"functionDeclarations": []}]
    return [d["name"] for d in tools[0]["functionDeclarations"]]


async def test_each_number_gets_its_agent_and_unknown_numbers_the_default(
    stack: StackFactory, tmp_path: Path
) -> None:
    s = await stack({"greeting": GREETING}, agents_file=write_agents(tmp_path))

    report, sales = await place_call(s, SALES, from_number="+15550142424")
    assert prompt_of(sales) == "You sell for Example Dental. The caller's number is +15550142424."
    assert speech_of(sales) == {
        "voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}},
        "language_code": "en-GB",
    }
    assert tools_of(sales) == [
        "end_call", "book_appointment", "move_appointment", "cancel_appointment",
        "list_appointments",
    ]  # fmt: skip
    # No hook: {customer_name} has no value and stays as written (visible, not fatal).
    assert sales.texts[0] == "Say: welcome to sales, {customer_name}!"
    assert (await call_record(s, report.call_sid))["agent"] == "sales"

    report, support = await place_call(s, SUPPORT)
    assert prompt_of(support) == "You are Support. Speak support's language."
    assert support.model == "models/gemini-support-model"
    assert speech_of(support)["voice_config"]["prebuilt_voice_config"]["voice_name"] == "Charon"
    assert speech_of(support)["language_code"] == "de-DE"
    assert tools_of(support) == ["end_call", "transfer_call"]
    assert support.texts[0] == "Say: support here."
    record = await call_record(s, report.call_sid)
    assert (record["agent"], record["meta"]["voice"]) == ("support", "Charon")

    report, default = await place_call(s, UNKNOWN)
    assert prompt_of(default) == "You are the front desk of Example Dental."
    assert "language_code" not in speech_of(default)
    assert tools_of(default) == ["end_call"]
    assert default.texts[0] == "Greet the caller from the front desk."
    assert (await call_record(s, report.call_sid))["agent"] == "front-desk"


async def test_agent_asked_for_on_the_webhook_url_wins(stack: StackFactory, tmp_path: Path) -> None:
    """`voicebot call --agent support` puts ?agent=support on the (signed) voice URL."""
    s = await stack({"greeting": GREETING}, agents_file=write_agents(tmp_path))
    report, session = await place_call(
        s, UNKNOWN, webhook_query={"agent": "support", "campaign": "spring"}
    )
    assert session.texts[0] == "Say: support here."
    assert report.custom_parameters["agent"] == "support"
    assert report.custom_parameters["campaign"] == "spring"  # rides to the tools' context
    assert (await call_record(s, report.call_sid))["agent"] == "support"


async def test_hook_enriches_prompt_greeting_and_tool_state(
    stack: StackFactory, tmp_path: Path
) -> None:
    s = await stack(
        {"greeting": GREETING},
        agents_file=write_agents(tmp_path),
        call_setup_hook="tests.app.agents.sample_hooks:enrich",
    )
    sample_hooks.SEEN.clear()
    report, session = await place_call(
        s, SALES, from_number="+15550142424", webhook_query={"crm_id": "42"}
    )
    facts = sample_hooks.SEEN[-1]
    assert (facts.call_sid, facts.from_number, facts.to_number) == (
        report.call_sid, "+15550142424", SALES,
    )  # fmt: skip
    assert (facts.agent, facts.direction, dict(facts.parameters)) == (
        "sales", "inbound", {"crm_id": "42"},
    )  # fmt: skip
    assert prompt_of(session) == (
        "You sell for Example Dental. The caller's number is +15550142424.\n\n"
        "The caller is Ada Lovelace, a gold customer (agent sales)."
    )
    assert session.texts[0] == "Say: welcome to sales, Ada!"
    # Seeded into the call's tool state, next to the built-ins.
    state = await s.services.state_store.load(report.call_sid)
    assert (state["customer_name"], state["tier"]) == ("Ada", "gold")
    assert state["caller_number"] == "+15550142424" and state["local_time"]
    record = await call_record(s, report.call_sid)
    (note,) = [n for n in record["notes"] if n["kind"] == "setup_hook"]
    assert note["detail"].startswith("ok")
    assert outcomes(s, "setup_hook", "ok") == 1


@pytest.mark.parametrize(
    ("hook", "status"),
    [("explode", "error: RuntimeError: CRM is down"), ("slow", "timeout: no answer within 0.3 s")],
)
async def test_failing_hook_leaves_the_call_unaffected(
    stack: StackFactory, tmp_path: Path, hook: str, status: str
) -> None:
    s = await stack(
        {"greeting": GREETING},
        agents_file=write_agents(tmp_path),
        call_setup_hook=f"tests.app.agents.sample_hooks:{hook}",
        call_setup_hook_timeout=0.3,
    )
    report, session = await place_call(s, SALES, from_number="+15550142424")
    # The agent's defaults: its own prompt and greeting, the built-in variables.
    assert prompt_of(session) == "You sell for Example Dental. The caller's number is +15550142424."
    assert session.texts[0] == "Say: welcome to sales, {customer_name}!"
    record = await call_record(s, report.call_sid)
    assert record["end_reason"] == "caller_hangup"
    (note,) = [n for n in record["notes"] if n["kind"] == "setup_hook"]
    assert note["detail"].startswith(status)
    assert outcomes(s, "setup_hook", status.split(":")[0]) == 1


async def test_keypad_digits_reach_live_as_caller_input(
    stack: StackFactory, tmp_path: Path
) -> None:
    s = await stack({"greeting": GREETING}, agents_file=write_agents(tmp_path))
    keys = ((1.0, "1"), (1.3, "2"), (1.6, "#"), (3.5, "5"))
    report, session = await place_call(s, SALES, dtmf=keys, listen_seconds=5.5)
    # Digits within ~1 s of each other go together; the late "5" on its own.
    assert session.texts[1:] == [
        "The caller pressed 1, 2, # on the keypad.",
        "The caller pressed 5 on the keypad.",
    ]
    record = await call_record(s, report.call_sid)
    assert [d["digit"] for d in record["dtmf"]] == ["1", "2", "#", "5"]

    # dtmf = "ignore": recorded, never sent to the model.
    report, session = await place_call(s, SUPPORT, dtmf=keys[:1], listen_seconds=2.5)
    assert session.texts == ["Say: support here."]
    record = await call_record(s, report.call_sid)
    assert [d["digit"] for d in record["dtmf"]] == ["1"]


ANALYSED = """
[agents.front-desk]
default = true
system_prompt = "You are the front desk."
greeting = "Greet the caller."

[agents.front-desk.analysis]
prompt = "Summarise the call and extract the fields."
model = "gemini-analysis-test"

[agents.front-desk.analysis.schema]
type = "object"
required = ["outcome", "summary"]

[agents.front-desk.analysis.schema.properties.outcome]
type = "string"
enum = ["booked", "no_booking"]

[agents.front-desk.analysis.schema.properties.summary]
type = "string"
"""


class Receiver:
    """An ANALYSIS_WEBHOOK_URL endpoint: the first `fail` requests get a 503."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[tuple[bytes, dict[str, str]]] = []

    async def endpoint(self, request: Request) -> Response:
        self.requests.append((await request.body(), dict(request.headers)))
        if len(self.requests) <= self.fail:
            return Response("busy", status_code=503)
        return Response(status_code=204)


async def record_with(s: LocalStack, call_sid: str, key: str) -> dict[str, Any]:
    """The call record once the work after the call has added `key` to it."""
    async with asyncio.timeout(20):
        while key not in (record := await call_record(s, call_sid)):  # noqa: ASYNC110 - a file
            await asyncio.sleep(0.05)
    return record


async def test_analysis_lands_in_the_record_and_is_posted_signed(
    stack: StackFactory, tmp_path: Path
) -> None:
    receiver = Receiver(fail=1)
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serving(app) as url:
        s = await stack(
            {"greeting": {"clip": "greeting"}},
            agents_file=write_agents(tmp_path, ANALYSED),
            analysis_webhook_url=url + "/hook",
            analysis_webhook_secret="whsec-test",
            analysis_webhook_backoff=0.1,
        )
        report, _ = await place_call(s, UNKNOWN)
        record = await record_with(s, report.call_sid, "analysis_webhook")

    analysis = record["analysis"]
    assert analysis["status"] == "ok", analysis
    assert analysis["model"] == "gemini-analysis-test"
    assert analysis["result"] == {"outcome": "booked", "summary": "example summary"}
    # What Gemini was asked: structured JSON output with the agent's schema.
    assert s.fake is not None
    (asked,) = s.fake.generate_requests
    assert asked.path.endswith("/models/gemini-analysis-test:generateContent")
    assert asked.body is not None
    config = asked.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["required"] == ["outcome", "summary"]
    prompt = asked.body["contents"][0]["parts"][0]["text"]
    assert prompt.startswith("Summarise the call") and "Agent: " in prompt

    # Posted after one 503 (retried), signed over the exact body.
    assert len(receiver.requests) == 2
    body, headers = receiver.requests[-1]
    assert verify("whsec-test", body, headers[SIGNATURE_HEADER.lower()])
    assert not verify("other-secret", body, headers[SIGNATURE_HEADER.lower()])
    assert headers[CALL_SID_HEADER.lower()] == report.call_sid
    assert b'"analysis"' in body and report.call_sid.encode() in body
    assert record["analysis_webhook"]["status"] == "delivered"
    assert record["analysis_webhook"]["attempts"] == 2
    assert outcomes(s, "analysis", "ok") == outcomes(s, "analysis_webhook", "delivered") == 1


async def test_invalid_json_from_the_model_is_an_analysis_error(
    stack: StackFactory, tmp_path: Path
) -> None:
    s = await stack(
        {"greeting": GREETING, "generate": {"mode": "invalid_json"}},
        agents_file=write_agents(tmp_path, ANALYSED),
    )
    report, _ = await place_call(s, UNKNOWN)
    record = await record_with(s, report.call_sid, "analysis")
    assert record["analysis"]["status"] == "error"
    assert "not valid JSON" in record["analysis"]["error"]
    assert record["end_reason"] == "caller_hangup"  # the call itself was fine


LIVE_OPTIONS = """
[agents.tuned]
default = true
system_prompt = "Tuned."
voice = "Aoede"
language = "fr-FR"
tools = ["end_call", "transfer_call"]
tool_behavior = { transfer_call = "NON_BLOCKING" }

[agents.tuned.live]
affective_dialog = true
proactive_audio = true
thinking_budget = 256
compression_trigger_tokens = 80000
compression_target_tokens = 40000

[agents.tuned.live.activity_detection]
start_sensitivity = "high"
end_sensitivity = "low"
prefix_padding_ms = 100
silence_duration_ms = 600
"""


async def test_every_live_option_of_an_agent_reaches_the_setup_from_both_clients(
    stack: StackFactory, tmp_path: Path
) -> None:
    """The agents file's Live options, as the Live API names them, identical whether the
    direct client or google-genai itself sent the setup."""
    setups = []
    for client in ("direct", "sdk"):
        s = await stack(
            {"greeting": GREETING},
            agents_file=write_agents(tmp_path, LIVE_OPTIONS),
            live_client=client,
        )
        _, session = await place_call(s, UNKNOWN)
        setups.append(session.setup)
    direct, sdk = setups
    assert direct == sdk
    assert direct is not None
    generation = direct["generationConfig"]
    assert generation["speechConfig"]["language_code"] == "fr-FR"
    assert generation["enableAffectiveDialog"] is True
    assert generation["thinkingConfig"] == {"thinking_budget": 256}
    assert direct["proactivity"] == {"proactive_audio": True}
    assert direct["realtimeInputConfig"] == {
        "automatic_activity_detection": {
            "start_of_speech_sensitivity": "START_SENSITIVITY_HIGH",
            "end_of_speech_sensitivity": "END_SENSITIVITY_LOW",
            "prefix_padding_ms": 100,
            "silence_duration_ms": 600,
        }
    }
    assert direct["contextWindowCompression"] == {
        "trigger_tokens": 80000,
        "sliding_window": {"target_tokens": 40000},
    }
    behaviors = {d["name"]: d.get("behavior") for d in direct["tools"][0]["functionDeclarations"]}
    assert behaviors == {"end_call": None, "transfer_call": "NON_BLOCKING"}


async def test_with_gemini_detection_off_the_bridge_marks_the_callers_turn(
    stack: StackFactory, tmp_path: Path
) -> None:
    text = (
        '[agents.ptt]\ndefault = true\nsystem_prompt = "Hi."\n'
        "[agents.ptt.live.activity_detection]\ndisabled = true\nsilence_duration_ms = 400\n"
    )
    s = await stack(
        {"greeting": GREETING, "default_reply": {"clip": "tone:1500:0.5"}},
        agents_file=write_agents(tmp_path, text),
    )
    assert s.fake is not None
    caller = np.concatenate([tone(400, 0.6), silence(0.2)])
    options = call_options(s, caller, wait_for_greeting_seconds=2.0, listen_seconds=2.5)
    report = await simulate_call(options)
    assert report.error is None, report.error
    (session,) = s.fake.sessions
    assert session.setup is not None
    assert session.setup["realtimeInputConfig"] == {
        "automatic_activity_detection": {"disabled": True, "silence_duration_ms": 400}
    }
    # One marked turn, and the fake (which then only listens to the marks) answered it.
    assert [name for _, name in session.signals] == ["activity_start", "activity_end"]
    assert session.turns_completed == 2  # greeting + the reply
    assert report.response_latencies_ms and report.response_latencies_ms[0] is not None
