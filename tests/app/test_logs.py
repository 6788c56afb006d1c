"""Structured logs: JSON shape, per-call binding, secret redaction by key and by value."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from app.logs import (
    REDACTED,
    bind_call,
    configure_from_settings,
    configure_logging,
    forget_secrets,
    redact_secrets,
    register_secret,
    unbind_call,
)

GEMINI_KEY = "AIzaSy-test-gemini-key-0123456789"
AUTH_TOKEN = "twilio-auth-token-abcdef123456"


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Leave structlog, stdlib logging and the secret list as we found them."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.contextvars.clear_contextvars()
    forget_secrets()
    yield
    forget_secrets()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_have_the_expected_shape() -> None:
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)  # a StringIO is not a terminal: JSON

    structlog.get_logger("voicebot.test").info("call.started", caller="+15550100001")

    [line] = json_lines(out)
    assert line["event"] == "call.started"
    assert line["level"] == "info"
    assert line["logger"] == "voicebot.test"
    assert line["caller"] == "+15550100001"
    assert line["timestamp"].endswith("Z")


def test_level_filters() -> None:
    out = io.StringIO()
    configure_logging("WARNING", "json", stream=out)
    log = structlog.get_logger()
    log.info("hidden")
    log.warning("shown")
    assert [line["event"] for line in json_lines(out)] == ["shown"]


def test_console_format_is_not_json() -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", stream=out)
    structlog.get_logger().info("hello", who="console")
    text = out.getvalue()
    assert "hello" in text and "who=console" in text
    assert not text.lstrip().startswith("{")


def test_stdlib_records_go_through_the_same_pipeline() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    bind_call("CA123", "MZ456")

    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)

    [line] = json_lines(out)
    assert line["event"] == "Started server process [42]"
    assert line["logger"] == "uvicorn.error"
    assert (line["call_sid"], line["stream_sid"]) == ("CA123", "MZ456")


def test_bind_call_tags_every_line_of_the_call() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = structlog.get_logger()

    bind_call("CA1", "MZ1")
    log.info("one")
    log.info("two")
    unbind_call()
    log.info("after")

    lines = json_lines(out)
    assert [(x.get("call_sid"), x.get("stream_sid")) for x in lines] == [
        ("CA1", "MZ1"),
        ("CA1", "MZ1"),
        (None, None),
    ]


async def test_concurrent_calls_keep_their_own_context() -> None:
    async def call(sid: str) -> None:
        bind_call(sid, "MZ" + sid)
        await asyncio.sleep(0)
        structlog.get_logger().info("tick")

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await asyncio.gather(call("CA-a"), call("CA-b"))

    assert sorted(entry["call_sid"] for entry in logs) == ["CA-a", "CA-b"]
    assert all(entry["stream_sid"] == "MZ" + entry["call_sid"] for entry in logs)


def test_secret_keys_are_redacted() -> None:
    with capture_logs(processors=[redact_secrets]) as logs:
        structlog.get_logger().info(
            "request",
            api_key="k-1",
            authToken="t-1",
            headers={"X-Twilio-Signature": "sig", "Accept": "text/xml"},
            password="p",
            prompt_token_count=12,
            call_sid="CA1",
        )

    [entry] = logs
    assert entry["api_key"] == REDACTED
    assert entry["authToken"] == REDACTED
    assert entry["headers"] == {"X-Twilio-Signature": REDACTED, "Accept": "text/xml"}
    assert entry["password"] == REDACTED
    assert entry["prompt_token_count"] == 12  # a count about tokens, not a token
    assert entry["call_sid"] == "CA1"


def test_registered_secret_values_are_scrubbed_everywhere() -> None:
    register_secret(GEMINI_KEY)
    register_secret(AUTH_TOKEN)
    register_secret("")  # ignored, not "scrub everything"
    register_secret(None)

    with capture_logs(processors=[redact_secrets]) as logs:
        structlog.get_logger().warning(
            f"connect failed for key={GEMINI_KEY}",
            url=f"wss://x/?key={GEMINI_KEY}",
            nested={"detail": [f"token {AUTH_TOKEN} rejected", 3]},
            error=RuntimeError(f"bad {AUTH_TOKEN}"),
        )

    [entry] = logs
    flat = repr(entry)
    assert GEMINI_KEY not in flat and AUTH_TOKEN not in flat
    assert entry["event"] == f"connect failed for key={REDACTED}"
    assert entry["nested"] == {"detail": [f"token {REDACTED} rejected", 3]}


def test_rendered_json_has_no_secrets_even_in_tracebacks() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    register_secret(AUTH_TOKEN)
    log = structlog.get_logger()

    try:
        raise ValueError(f"auth failed with {AUTH_TOKEN}")
    except ValueError:
        log.exception("twilio.failed", twilio_auth_token=AUTH_TOKEN)
    try:
        raise ValueError(f"stdlib saw {AUTH_TOKEN}")
    except ValueError:
        logging.getLogger("some.library").exception("oops %s", AUTH_TOKEN)

    text = out.getvalue()
    assert AUTH_TOKEN not in text
    first, second = json_lines(out)
    assert first["twilio_auth_token"] == REDACTED
    assert "ValueError: auth failed with [redacted]" in first["exception"]
    assert second["event"] == f"oops {REDACTED}"
    assert "stdlib saw [redacted]" in second["exception"]


def test_console_output_is_scrubbed_too() -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", stream=out)
    register_secret(AUTH_TOKEN)
    try:
        raise ValueError(AUTH_TOKEN)
    except ValueError:
        structlog.get_logger().exception("boom")
    assert AUTH_TOKEN not in out.getvalue()
    assert REDACTED in out.getvalue()


def test_configure_from_settings_registers_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.settings import Settings

    settings = Settings(
        gemini_api_key=GEMINI_KEY,  # type: ignore[arg-type]
        twilio_auth_token=AUTH_TOKEN,  # type: ignore[arg-type]
        admin_token="admin-token-42424242",  # type: ignore[arg-type]
        log_format="json",
    )
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    configure_from_settings(settings)

    structlog.get_logger().info(f"{GEMINI_KEY} {AUTH_TOKEN} admin-token-42424242")

    [line] = json_lines(out)
    assert line["event"] == f"{REDACTED} {REDACTED} {REDACTED}"
