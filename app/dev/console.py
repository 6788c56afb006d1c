"""`voicebot console`: the service on localhost with the web console, ready to talk to.

Without GEMINI_API_KEY the agent is the fake Live server (it answers with its bundled
clips when you stop talking, books an appointment with a tool on your first turn and
hangs up with `end_call` on your third); with a key it is a real Gemini conversation.
Prints the URL to open and the token to log in with.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from app.dev.fakes.live.scenario import Scenario
from app.dev.local_stack import local_stack
from app.logs import configure_logging
from app.settings import load_settings

CONSOLE_TOOLS = "end_call,transfer_call,appointments"


def console_scenario() -> Scenario:
    booking = {
        "caller_text": "I'd like to book an appointment for Tuesday at ten.",
        "tool_calls": [
            {
                "name": "book_appointment",
                "args": {"day": "tuesday", "time": "10:00", "name": "Alex"},
            }
        ],
        "clip": "reply_booking",
    }
    goodbye = {
        "caller_text": "That's all, thank you. Goodbye.",
        "tool_calls": [{"name": "end_call", "args": {"reason": "caller said goodbye"}}],
        "clip": "goodbye",
    }
    turns = [booking, {"clip": "reply_generic"}, goodbye]
    return Scenario.from_dict({"greeting": {"clip": "greeting"}, "turns": turns})


async def run_console(port: int, stop: asyncio.Event | None = None) -> int:
    configured = load_settings()
    real = configured.secret("gemini_api_key") is not None
    token = configured.secret("admin_token") or secrets.token_urlsafe(18)
    overrides: dict[str, Any] = {"admin_token": token, "console_enabled": True}
    if not configured.secret("gemini_api_key"):
        overrides["tools"] = CONSOLE_TOOLS
    async with local_stack(
        None if real else console_scenario(),
        real_gemini=real,
        env_file=".env",
        port=port,
        **overrides,
    ) as stack:
        agent = "Gemini Live" if real else "the fake Live server (no GEMINI_API_KEY)"
        print(f"voicebot console: {stack.base_url}/console/  (agent: {agent})")
        print(f"log in with the admin token: {token}")
        print(f"recordings: {stack.settings.recordings_dir.resolve()}")
        print("Ctrl-C to stop.", flush=True)
        await (stop or asyncio.Event()).wait()
    return 0


def main(port: int) -> int:
    configure_logging("INFO", "console")
    try:
        return asyncio.run(run_console(port))
    except KeyboardInterrupt:
        return 0
