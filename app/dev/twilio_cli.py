"""`voicebot twilio ...`: point a Twilio number at this service, or place a call.

    voicebot twilio configure --number +15551234567 [--url https://bot.example.com]
    voicebot call +15557654321 [--from +15551234567] [--url https://bot.example.com]

`--url` defaults to PUBLIC_BASE_URL: the https address Twilio reaches this service at.
`app/cli.py` calls `register(twilio_subparsers, top_level_subparsers)` and, for either
command, `await run(args, settings)`.
"""

from __future__ import annotations

import argparse
import re
import sys
from urllib.parse import urlencode, urlsplit

from app.agents.loader import build_agents
from app.settings import Settings
from app.twilio.rest import TwilioRestClient, TwilioRestError

VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"

# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class UsageError(Exception):
    """A problem the user fixes by changing a flag or a setting; printed, exit code 2."""


def register(
    twilio_commands: argparse._SubParsersAction[argparse.ArgumentParser],
    top_level: argparse._SubParsersAction[argparse.ArgumentParser] | None = None,
) -> None:
    """Add `configure` under the `twilio` command, and `call`.

    `call` goes at the top level (`voicebot call`) when `top_level` is given, otherwise
    under `twilio` too (`voicebot twilio call`).
    """
    configure = twilio_commands.add_parser(
        "configure",
        help="point a number's voice webhook and status callback at this service",
        description="Point a Twilio number's voice webhook at {url}/twilio/voice and its "
        "status callback at {url}/twilio/status (both POST).",
    )
    configure.add_argument("--number", required=True, help="the Twilio number, E.164 (+1555...)")
    _add_url(configure)

    call = (top_level or twilio_commands).add_parser(
        "call",
        help="place an outbound call answered by the agent (needs Twilio credentials)",
        description="Place a call through Twilio whose answer URL is {url}/twilio/voice, "
        "so this service's agent talks to whoever picks up.",
    )
    call.add_argument("to", help="the number to call, E.164 (+1555...)")
    call.add_argument(
        "--from",
        dest="from_",
        help="caller ID: a number on your Twilio account (default: the account's only number)",
    )
    call.add_argument(
        "--agent",
        help="the agent (AGENTS_FILE) that talks; default: the one owning the caller ID number",
    )
    _add_url(call)


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="public base URL Twilio reaches this service at (default: PUBLIC_BASE_URL)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `twilio` subcommand. 0 = done, 1 = Twilio refused, 2 = usage/config problem."""
    try:
        client = _client(settings)
        base = _public_base(args.url or settings.public_base_url)
        try:
            if getattr(args, "twilio_command", None) == "configure":
                return await _configure(client, _number(args.number, "--number"), base)
            return await _call(client, args, base, settings)
        finally:
            client.close()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TwilioRestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _configure(client: TwilioRestClient, number: str, base: str) -> int:
    voice_url, status_url = base + VOICE_PATH, base + STATUS_PATH
    sid = await client.configure_number(number, voice_url, status_url)
    print(f"{number} ({sid}) now sends calls to {voice_url} (status: {status_url})")
    return 0


async def _call(
    client: TwilioRestClient, args: argparse.Namespace, base: str, settings: Settings
) -> int:
    to = _number(args.to, "the number to call")
    from_ = _number(args.from_, "--from") if args.from_ else await _only_number(client)
    voice_url = base + VOICE_PATH
    if args.agent:
        # The webhook reads ?agent= (Twilio signs the URL with its query).
        known = [agent.name for agent in build_agents(settings)]
        if args.agent not in known:
            raise UsageError(f"--agent: no agent {args.agent!r}; agents: {', '.join(known)}")
        voice_url += "?" + urlencode({"agent": args.agent})
    sid = await client.create_call(to, from_, voice_url, base + STATUS_PATH)
    print(f"calling {to} from {from_}: call {sid}; the agent answers at {voice_url}")
    return 0


async def _only_number(client: TwilioRestClient) -> str:
    numbers = await client.list_numbers()
    if len(numbers) == 1:
        return numbers[0]
    if not numbers:
        raise UsageError("the Twilio account has no phone numbers to call from; buy one first")
    raise UsageError(
        "the Twilio account has several numbers; choose the caller ID with --from "
        f"(one of {', '.join(sorted(numbers))})"
    )


def _client(settings: Settings) -> TwilioRestClient:
    missing = [
        name
        for name, value in (
            ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
            ("TWILIO_AUTH_TOKEN", settings.secret("twilio_auth_token")),
        )
        if not value
    ]
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} not set: find them in the Twilio console and put them "
            "in the environment or .env"
        )
    return TwilioRestClient(
        settings.twilio_account_sid or "",
        settings.secret("twilio_auth_token") or "",
        base_url=settings.twilio_api_base_url,
    )


def _public_base(url: str | None) -> str:
    if not url:
        raise UsageError(
            "PUBLIC_BASE_URL is not set and --url was not given: Twilio needs the public "
            "https URL of this service (for example https://bot.example.com)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--url must be an absolute https URL, got {url!r}")
    if parts.scheme != "https":
        # Twilio calls http webhooks, but Media Streams need wss with a trusted cert.
        print(f"warning: {url} is not https; Twilio media streams need wss://", file=sys.stderr)
    return url.rstrip("/")


def _number(value: str, what: str) -> str:
    number = re.sub(r"[\s().-]", "", value)
    if not _E164.match(number):
        raise UsageError(f"{what}: {value!r} is not an E.164 phone number such as +15551234567")
    return number
