"""A real Chromium for the console's tests, driven by Playwright.

Debian's `chromium` package, launched through Playwright's `executable_path` (Playwright's
own browser download does not work on these machines). Skipped with a reason when either
is missing, except under CI=true, where .ci/run installs both and a missing browser fails.

    async def test_x(browser_factory):
        browser = await browser_factory(microphone=wav_path)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs it; browser tests must run)")
    pytest.skip(reason)


class BrowserFactory(Protocol):
    def __call__(self, *, microphone: Path | None = None) -> Awaitable[Any]: ...


@pytest.fixture
async def browser_factory() -> AsyncIterator[BrowserFactory]:
    executable = chromium_path()
    if executable is None:
        _unavailable("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    async with async_playwright() as playwright:
        browsers: list[Any] = []

        async def launch(*, microphone: Path | None = None) -> Any:
            args = list(FLAGS)
            if microphone is not None:
                # The WAV plays as the microphone, looped.
                args.append(f"--use-file-for-fake-audio-capture={microphone}")
            browser = await playwright.chromium.launch(
                executable_path=executable, args=args, headless=True
            )
            browsers.append(browser)
            return browser

        yield launch
        for browser in browsers:
            await browser.close()
