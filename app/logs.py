"""Structured logging: one pipeline for structlog and stdlib (uvicorn, twilio, httpx).

JSON lines when stdout is not a terminal (containers, log shippers), a readable console
renderer on a terminal. Per-call context (`bind_call`) lives in contextvars, so every
line logged inside a call's tasks carries `call_sid` and `stream_sid`.

Secrets are removed twice: `redact_secrets` blanks values under secret-looking keys and
scrubs registered secret values from every string in the event; the rendered line is
scrubbed once more, which also covers tracebacks the renderer formats itself.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

if TYPE_CHECKING:
    from app.settings import Settings

REDACTED = "[redacted]"

# A key is secret when one of its words (snake, kebab or camel case) is one of these:
# `api_key`, `authToken`, `X-Twilio-Signature`, `Authorization`...
_SECRET_WORDS = frozenset(
    [
        "token",
        "key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "authorization",
        "signature",
        "cookie",
        "credentials",
    ]
)
# ...unless its last word says it is a number about the secret, not the secret:
# Live usage metadata (`prompt_token_count`) and `stream_token_ttl` stay readable.
_HARMLESS_LAST_WORDS = frozenset(["count", "counts", "ttl", "seconds", "len", "length"])
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

# Shorter "secrets" would scrub ordinary words and numbers out of every line.
MIN_SECRET_LENGTH = 6

_secrets: frozenset[str] = frozenset()

# Libraries whose INFO output is per-request noise (twilio logs every request's headers).
_QUIET_LOGGERS = ("twilio", "httpx", "httpcore", "urllib3")
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_HANDLER_NAME = "voicebot"


def register_secret(value: str | None) -> None:
    """Scrub `value` from every log line from now on (API keys, auth tokens)."""
    global _secrets
    if value and len(value) >= MIN_SECRET_LENGTH:
        _secrets = _secrets | {value}


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    global _secrets
    _secrets = frozenset()


def bind_call(call_sid: str | None, stream_sid: str | None = None) -> None:
    """Tag every log line of the current task (and tasks it starts) with the call."""
    structlog.contextvars.bind_contextvars(call_sid=call_sid, stream_sid=stream_sid)


def unbind_call() -> None:
    structlog.contextvars.unbind_contextvars("call_sid", "stream_sid")


def scrub(text: str) -> str:
    """`text` with every registered secret value replaced."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if _secret_key(k) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    if isinstance(value, set | frozenset):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float) or not _secrets:
        return value
    # Any other object is rendered with repr() later: check that text now.
    text = repr(value)
    cleaned = scrub(text)
    return value if cleaned == text else cleaned


def _secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    words = [w.lower() for w in _WORDS.findall(key)]
    if not words or words[-1] in _HARMLESS_LAST_WORDS:
        return False
    return any(w in _SECRET_WORDS for w in words)


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: blank secret-named keys, scrub secret values anywhere."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):  # structlog's own bookkeeping (`_record`, ...)
            continue
        if key in ("exc_info", "stack_info"):
            continue  # not yet text; the rendered line is scrubbed instead
        event_dict[key] = REDACTED if _secret_key(key) else _clean(value)
    return event_dict


def _scrub_rendered(logger: WrappedLogger, method_name: str, line: Any) -> Any:
    return scrub(line) if isinstance(line, str) else line


def shared_processors() -> list[Processor]:
    """Run for structlog events and for foreign (stdlib) records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderers(json_lines: bool, colors: bool) -> list[Processor]:
    if json_lines:
        return [
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
            _scrub_rendered,
        ]
    # ConsoleRenderer formats exc_info itself (format_exc_info would make it warn).
    return [redact_secrets, structlog.dev.ConsoleRenderer(colors=colors), _scrub_rendered]


def configure_logging(
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    *,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and stdlib logging once, at start. Safe to call again."""
    out = stream if stream is not None else sys.stdout
    tty = out.isatty()
    json_lines = fmt == "json" or (fmt == "auto" and not tty)
    numeric = logging.getLevelNamesMapping()[level.upper()]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderers(json_lines, colors=tty),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler: others (pytest's capture) are not ours to remove.
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # uvicorn installs its own handlers unless run with log_config=None; route its
    # loggers through the root handler either way.
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        # A uvicorn.Config run earlier in the process (log_level=...) leaves its own level
        # behind; the root's level is the one that counts.
        logger.setLevel(logging.NOTSET)
    quiet = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)

    structlog.configure(
        processors=[
            *shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Not cached: tests reconfigure levels and processors; a bind per line is cheap.
        cache_logger_on_first_use=False,
    )


def register_secrets(values: Iterable[str | None]) -> None:
    """`register_secret` for several values (e.g. from `Settings.secret(...)`)."""
    for value in values:
        register_secret(value)


SECRET_SETTINGS = ("gemini_api_key", "twilio_auth_token", "admin_token")


def configure_from_settings(settings: Settings) -> None:
    """`configure_logging` from LOG_LEVEL/LOG_FORMAT, and register every secret setting."""
    register_secrets(settings.secret(name) for name in SECRET_SETTINGS)
    configure_logging(settings.log_level, settings.log_format)


@contextlib.contextmanager
def suppress_logged(log: Any, event: str, **fields: Any) -> Iterator[None]:
    """`contextlib.suppress(Exception)` for best-effort cleanup, but never silent: what was
    suppressed is logged at warning, as its type and message (cut short; registered
    secrets are scrubbed by `redact_secrets` like everywhere else)."""
    try:
        yield
    except Exception as exc:
        log.warning(event, error_type=type(exc).__name__, error=str(exc)[:200], **fields)
