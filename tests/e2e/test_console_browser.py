"""The web console in a real browser (Chromium via Playwright) against the fake Live server.

One web call carries most assertions, because a call runs in real time: the login gate,
the caller's speech reaching Live, the greeting and the replies played by the page (told
apart by their tones), a barge-in whose `clear` silences the page's player, the live view
showing the transcript and a tool call while the call runs, and the finished call in the
history with a recording that loads and plays. Screenshots of the pages go to docs/img/
with UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.signal import resample_poly

from app.assets import load_clip_8k
from app.dev.local_stack import LocalStack
from telephony.audiofile import write_wav
from tests.e2e.conftest import StackFactory
from tests.support.browser import BrowserFactory

ADMIN = "console-test-token"
# The screenshots are always taken (and so checked to render); they replace the ones in
# docs/img/ only when asked (UPDATE_SCREENSHOTS=1), so a test run leaves the tree clean.
DOCS_IMG = (
    Path(__file__).resolve().parents[2] / "docs" / "img"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "voicebot-console-screenshots"
)
DOCS_IMG.mkdir(parents=True, exist_ok=True)
GREETING_HZ, REPLY_HZ, SECOND_HZ = 440, 1000, 700
TONES = (GREETING_HZ, REPLY_HZ, SECOND_HZ)
LOG = "window.__voicebotTest.call.log"
SCENARIO = {
    "greeting": {"clip": f"tone:{GREETING_HZ}:1.5", "text": "Hello, how can I help?"},
    "turns": [
        {
            "caller_text": "I'd like to book an appointment for Tuesday at ten.",
            "tool_calls": [
                {
                    "name": "book_appointment",
                    "args": {"day": "tuesday", "time": "10:00", "name": "Alex"},
                    "expect": {"result": {"day": "tuesday", "time": "10:00"}},
                }
            ],
            # Long enough for the caller to talk over it.
            "clip": f"tone:{REPLY_HZ}:8.0",
            "text": "Booked: Tuesday at ten. Is there anything else I can do for you today?",
        },
        {"caller_text": "No thanks, goodbye.", "clip": f"tone:{SECOND_HZ}:1.5", "text": "Bye!"},
    ],
}
MIC_RATE = 48000
QUANTUM = 128 / 8000  # one render quantum of the page's 8 kHz player
BOOKING_AT_S, BARGE_IN_AT_S, MIC_SECONDS = 3.0, 10.0, 60.0


def microphone_wav(path: Path) -> Path:
    """The caller: quiet while greeted, asks to book, then talks over the agent's reply."""
    speech = np.zeros(int(MIC_SECONDS * 8000), dtype=np.int16)
    for at, clip in ((BOOKING_AT_S, "caller_booking"), (BARGE_IN_AT_S, "caller_goodbye")):
        audio = load_clip_8k(clip)
        start = int(at * 8000)
        speech[start : start + audio.size] = audio
    upsampled = resample_poly(speech.astype(np.float64), MIC_RATE // 8000, 1)
    write_wav(path, np.clip(upsampled, -32768, 32767).astype(np.int16), MIC_RATE)
    return path


def goertzel(samples: NDArray[np.float64], hz: float, rate: int = 8000) -> float:
    n = np.arange(samples.size)
    return float(np.abs(np.sum(samples * np.exp(-2j * np.pi * hz * n / rate))))


def tone_of(samples: list[float]) -> int | None:
    """Which of the scenario's tones a 16 ms render quantum carries (None: quiet)."""
    block = np.asarray(samples, dtype=np.float64)
    if block.size < 64 or np.sqrt(np.mean(block**2)) < 0.01:
        return None
    powers = {hz: goertzel(block, hz) for hz in TONES}
    return max(powers, key=lambda hz: powers[hz])


async def wait_for(page: Any, expression: str, seconds: float = 20.0) -> Any:
    """Poll a JS expression until truthy (the pages' CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds} s: {expression}")
        await asyncio.sleep(0.1)


async def login(page: Any, base_url: str, token: str = ADMIN) -> None:
    await page.goto(f"{base_url}/console/")
    await page.wait_for_url("**/console/login**")
    await page.fill("#token", token)
    await page.click("button[type=submit]")


@pytest.fixture
async def console_stack(stack: StackFactory, tmp_path: Path) -> LocalStack:
    return await stack(SCENARIO, admin_token=ADMIN, tools="end_call,transfer_call,appointments")


async def test_login_gate(console_stack: LocalStack, browser_factory: BrowserFactory) -> None:
    browser = await browser_factory()
    page = await (await browser.new_context()).new_page()
    base = console_stack.base_url
    # Nothing answers without a session: pages redirect to the login, the API says 401.
    response = await page.goto(f"{base}/console/api/calls")
    assert response is not None and response.status == 401
    await login(page, base, token="wrong-token")
    await page.wait_for_selector("#error:has-text('wrong token')")
    assert "/console/login" in page.url
    await page.fill("#token", ADMIN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/console/")
    await page.wait_for_selector("#active-empty")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "voicebot_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # scripts cannot read it


async def test_web_call_live_view_and_review(
    console_stack: LocalStack, browser_factory: BrowserFactory, tmp_path: Path
) -> None:
    s = console_stack
    browser = await browser_factory(microphone=microphone_wav(tmp_path / "mic.wav"))
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    await login(page, s.base_url)
    await page.wait_for_url(f"{s.base_url}/console/")

    # --- a web call ---------------------------------------------------------------
    await page.goto(f"{s.base_url}/console/talk")
    await page.fill("#from", "+15550001111")
    await page.fill("#parameters", json.dumps({"campaign": "spring"}))
    await page.click("#call")
    await wait_for(page, "window.__voicebotTest.state === 'connected'")
    call_sid = await page.evaluate("window.__voicebotTest.call.call.call_sid")

    # The live view, opened while the call runs: transcript and the tool call arrive.
    live = await context.new_page()
    await live.goto(f"{s.base_url}/console/live/{call_sid}")
    await live.wait_for_selector("#feed .line.tool", timeout=30_000)
    await live.wait_for_selector("#feed .line.caller", timeout=10_000)
    await live.wait_for_selector("#feed .line.agent", timeout=10_000)
    assert "book_appointment" in (await live.text_content("#feed .line.tool") or "")
    assert await live.text_content("#status") == "In progress"
    # Listen in: both sides' audio reaches the live page and its mixer plays something.
    await live.click("#listen")
    heard = await wait_for(
        live,
        "(h => h.caller > 3 && h.agent > 3 && h.loudest > 0.01 && h)(window.__voicebotTest.listen)",
        20,
    )
    assert heard["caller"] > 3 and heard["agent"] > 3
    # The barge-in, as the page's player saw it.
    clears = await wait_for(
        page,
        "window.__voicebotTest.call.log.clears.length && window.__voicebotTest.call.log.clears",
        30,
    )
    await live.wait_for_selector("#feed .line.barge", timeout=10_000)
    # The reply to the barge-in played, then screenshots of a call in progress.
    deadline = time.monotonic() + 30
    while True:
        log = await page.evaluate(
            "({played: window.__voicebotTest.call.log.played,"
            " marks: window.__voicebotTest.call.log.marks,"
            " events: window.__voicebotTest.call.log.events,"
            " sent: window.__voicebotTest.call.log.sentFrames})"
        )
        tones = [(chunk["at"], tone_of(chunk["samples"])) for chunk in log["played"]]
        if sum(tone == SECOND_HZ for _, tone in tones) * QUANTUM > 1.0:
            break
        assert time.monotonic() < deadline, "the answer to the barge-in was not played"
        await asyncio.sleep(0.5)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(DOCS_IMG / "console-talk.png"))
    await live.screenshot(path=str(DOCS_IMG / "console-live.png"))
    # Once the last reply has played, every mark the server sent has been echoed.
    await wait_for(page, f"{LOG}.marks.length === {LOG}.events.filter(e => e === 'mark').length")
    await page.click("#hangup")
    await page.wait_for_selector("#after a")

    # --- what reached Live and what the page played -------------------------------
    session = s.fake.sessions[0] if s.fake else None
    assert session is not None
    heard = session.audio_array().astype(np.float64)
    assert heard.size > 16000 * 5, "the caller's audio reached the Live session"
    assert session.interruptions >= 1 and session.turns_completed >= 2
    assert [c.passed for c in session.tool_checks] == [True]
    assert log["sent"] > 200  # 20 ms frames: several seconds of microphone

    played = {
        hz: [at for at, tone in tones if tone == hz] for hz in (GREETING_HZ, REPLY_HZ, SECOND_HZ)
    }
    assert len(played[GREETING_HZ]) * QUANTUM > 1.0, "the greeting was played"
    assert len(played[REPLY_HZ]) * QUANTUM > 1.0, "the reply was played"

    # Barge-in: the clear dropped queued audio, and the page went silent within 100 ms.
    clear = clears[0]
    assert clear["dropped"] > 0, clear
    assert clear["stoppedAt"] - clear["receivedAt"] <= 0.1, clear
    after_clear = [at for at in played[REPLY_HZ] if at > clear["receivedAt"] + 0.1]
    assert after_clear == [], (
        f"reply audio played {after_clear[-1] - clear['receivedAt']:.3f} s after clear"
    )
    assert any(not m["cleared"] for m in log["marks"]), "marks echoed once played"

    # --- the finished call: history, call page, recording -------------------------
    await live.wait_for_selector("#status a", timeout=15_000)  # "Ended · open the call page"
    await page.goto(f"{s.base_url}/console/")
    row = page.locator(f"#history tr[data-sid='{call_sid}']")
    await row.wait_for(timeout=10_000)
    assert "web" in await row.inner_text()
    assert "caller hangup" in await row.inner_text()
    cells = await row.locator("td").all_inner_texts()
    assert cells[-1].isdigit() and int(cells[-1]) > 0, f"tokens column: {cells}"
    await page.screenshot(path=str(DOCS_IMG / "console-calls.png"))
    await row.locator("a").click()
    await page.wait_for_url(f"**/console/calls/{call_sid}")
    await wait_for(page, "window.__voicebotTest.loaded === true", 15)
    assert await page.locator("#feed .line.tool").count() == 1
    assert await page.locator(".timeline .mark.barge").count() >= 1
    # Click the agent's reply line: the player seeks there, plays and highlights it.
    agent_line = page.locator("#feed .line.agent", has_text="Booked")
    await agent_line.click()
    await wait_for(
        page, "window.__voicebotTest.playing && window.__voicebotTest.currentTime > 0", 10
    )
    started = await page.evaluate("window.__voicebotTest.currentTime")
    await asyncio.sleep(1.0)
    assert await page.evaluate("window.__voicebotTest.currentTime") > started + 0.3
    await page.wait_for_selector("#feed .line.agent.playing", timeout=5_000)
    await page.screenshot(path=str(DOCS_IMG / "console-call.png"), full_page=True)
    record = await page.evaluate(f"fetch('/console/api/calls/{call_sid}').then(r => r.json())")
    assert record["direction"] == "web" and record["from"] == "+15550001111"
    assert record["end_reason"] == "caller_hangup"
    assert record["meta"]["direction"] == "web"


async def test_cross_origin_websocket_refused(
    console_stack: LocalStack, browser_factory: BrowserFactory
) -> None:
    """A page on another origin cannot open the console's sockets with the user's cookie."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from app.dev.local_server import serving

    s = console_stack
    target = s.base_url.replace("http://", "ws://")
    attacker = Starlette(
        routes=[Route("/", lambda request: HTMLResponse("<!doctype html><title>elsewhere</title>"))]
    )
    probe = """async (url) => await new Promise((resolve) => {
        const socket = new WebSocket(url);
        socket.onopen = () => { resolve("open"); socket.close(); };
        socket.onerror = () => resolve("refused");
        setTimeout(() => resolve("timeout"), 5000);
    })"""
    browser = await browser_factory()
    context = await browser.new_context()
    page = await context.new_page()
    await login(page, s.base_url)
    await page.wait_for_url(f"{s.base_url}/console/")
    # Control: from the console's own origin, the listen socket opens (and then closes).
    assert await page.evaluate(probe, f"{target}/console/ws/listen/CA{'0' * 32}") == "open"
    async with serving(attacker) as elsewhere:
        # Same site (127.0.0.1), other origin: the browser sends the cookie, Origin gives it away.
        other = await context.new_page()
        await other.goto(elsewhere + "/")
        started = time.monotonic()
        for path in ("/console/ws/call", f"/console/ws/listen/CA{'0' * 32}"):
            assert await other.evaluate(probe, f"{target}{path}") == "refused", path
        assert time.monotonic() - started < 10
