"""`voicebot twilio configure` and `voicebot call`, end to end against the fake Twilio."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.dev import twilio_cli
from app.dev.fakes.twilio_rest import FakeTwilioState, fake_twilio_app, serve_in_thread
from app.settings import Settings

PUBLIC = "https://bot.example.com"
NUMBER = "+15550104444"
TWILIO_ENV = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE_URL", "PUBLIC_BASE_URL")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, FakeTwilioState]]:
    app, state = fake_twilio_app(auth_token="cli-test-token-123456")
    with serve_in_thread(app) as base_url:
        yield base_url, state


@pytest.fixture
def fake(
    served: tuple[str, FakeTwilioState], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[str, FakeTwilioState]:
    # Settings read the environment and ./.env: start every test from neither.
    for name in TWILIO_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    served[1].reset()
    return served


def settings_for(fake: tuple[str, FakeTwilioState], **overrides: object) -> Settings:
    base_url, state = fake
    values: dict[str, object] = {
        "twilio_account_sid": state.account_sid,
        "twilio_auth_token": state.auth_token,
        "twilio_api_base_url": base_url,
        "public_base_url": PUBLIC,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicebot")
    top = parser.add_subparsers(dest="command", required=True)
    twilio = top.add_parser("twilio")
    twilio_cli.register(twilio.add_subparsers(dest="twilio_command", required=True), top)
    return parser.parse_args(argv)


async def test_configure_points_the_number_at_the_service(
    fake: tuple[str, FakeTwilioState], capsys: pytest.CaptureFixture[str]
) -> None:
    _, state = fake
    number = state.add_number(NUMBER)

    code = await twilio_cli.run(
        parse("twilio", "configure", "--number", NUMBER), settings_for(fake)
    )

    assert code == 0
    assert number.voice_url == f"{PUBLIC}/twilio/voice"
    assert number.voice_method == "POST"
    assert number.status_callback == f"{PUBLIC}/twilio/status"
    assert number.sid in capsys.readouterr().out


async def test_configure_url_flag_overrides_public_base_url(
    fake: tuple[str, FakeTwilioState],
) -> None:
    _, state = fake
    number = state.add_number(NUMBER)
    args = parse("twilio", "configure", "--number", "+1 555-010-4444", "--url", "https://b.test/")

    assert await twilio_cli.run(args, settings_for(fake, public_base_url=None)) == 0
    assert number.voice_url == "https://b.test/twilio/voice"


async def test_configure_unknown_number(
    fake: tuple[str, FakeTwilioState], capsys: pytest.CaptureFixture[str]
) -> None:
    code = await twilio_cli.run(
        parse("twilio", "configure", "--number", NUMBER), settings_for(fake)
    )
    assert code == 1
    assert f"{NUMBER} is not a phone number on Twilio account" in capsys.readouterr().err


async def test_call_places_an_outbound_call_answered_by_the_agent(
    fake: tuple[str, FakeTwilioState], capsys: pytest.CaptureFixture[str]
) -> None:
    _, state = fake

    args = parse("call", "+15550105555", "--from", NUMBER)
    assert await twilio_cli.run(args, settings_for(fake)) == 0

    [call] = state.calls.values()
    assert (call.to, call.from_) == ("+15550105555", NUMBER)
    assert call.url == f"{PUBLIC}/twilio/voice"
    assert call.status_callback == f"{PUBLIC}/twilio/status"
    assert call.sid in capsys.readouterr().out


async def test_call_defaults_from_to_the_accounts_only_number(
    fake: tuple[str, FakeTwilioState],
) -> None:
    _, state = fake
    state.add_number(NUMBER)
    assert await twilio_cli.run(parse("call", "+15550105555"), settings_for(fake)) == 0
    [call] = state.calls.values()
    assert call.from_ == NUMBER


async def test_call_with_several_numbers_asks_for_from(
    fake: tuple[str, FakeTwilioState], capsys: pytest.CaptureFixture[str]
) -> None:
    _, state = fake
    state.add_number(NUMBER)
    state.add_number("+15550106666")
    assert await twilio_cli.run(parse("call", "+15550105555"), settings_for(fake)) == 2
    assert "--from" in capsys.readouterr().err
    assert not state.calls


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"twilio_account_sid": None}, "TWILIO_ACCOUNT_SID"),
        ({"twilio_auth_token": None}, "TWILIO_AUTH_TOKEN"),
        ({"public_base_url": None}, "PUBLIC_BASE_URL"),
    ],
)
async def test_missing_settings_are_named(
    fake: tuple[str, FakeTwilioState],
    capsys: pytest.CaptureFixture[str],
    missing: dict[str, object],
    named: str,
) -> None:
    args = parse("twilio", "configure", "--number", NUMBER)
    assert await twilio_cli.run(args, settings_for(fake, **missing)) == 2
    assert named in capsys.readouterr().err
    assert not fake[1].requests


async def test_bad_number_and_bad_url_are_usage_errors(
    fake: tuple[str, FakeTwilioState], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await twilio_cli.run(parse("call", "5550105555"), settings_for(fake)) == 2
    assert "E.164" in capsys.readouterr().err
    args = parse("twilio", "configure", "--number", NUMBER, "--url", "bot.example.com")
    assert await twilio_cli.run(args, settings_for(fake)) == 2
    assert "absolute https URL" in capsys.readouterr().err


async def test_wrong_token_is_reported_without_the_token(
    fake: tuple[str, FakeTwilioState], capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-token-987654321"
    args = parse("twilio", "configure", "--number", NUMBER)
    assert await twilio_cli.run(args, settings_for(fake, twilio_auth_token=wrong)) == 1
    out = capsys.readouterr()
    assert "TWILIO_AUTH_TOKEN" in out.err
    assert wrong not in out.err + out.out


def test_voicebot_cli_end_to_end(
    fake: tuple[str, FakeTwilioState],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.cli import main

    base_url, state = fake
    number = state.add_number(NUMBER)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", state.account_sid)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", state.auth_token)
    monkeypatch.setenv("TWILIO_API_BASE_URL", base_url)
    monkeypatch.setenv("PUBLIC_BASE_URL", PUBLIC)

    assert main(["twilio", "configure", "--number", NUMBER]) == 0
    assert main(["call", "+15550105555"]) == 0

    assert number.voice_url == f"{PUBLIC}/twilio/voice"
    [call] = state.calls.values()
    assert call.from_ == NUMBER
    assert state.auth_token not in capsys.readouterr().out


async def test_call_with_agent_puts_it_on_the_signed_voice_url(
    fake: tuple[str, FakeTwilioState], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, state = fake
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.front]\ndefault = true\n[agents.sales]\nvoice = "Kore"\n')
    settings = settings_for(fake, agents_file=agents)
    args = parse("call", "+15550105555", "--from", NUMBER, "--agent", "sales")
    assert await twilio_cli.run(args, settings) == 0
    [call] = state.calls.values()
    assert call.url == f"{PUBLIC}/twilio/voice?agent=sales"

    args = parse("call", "+15550105555", "--from", NUMBER, "--agent", "nobody")
    assert await twilio_cli.run(args, settings) == 2
    assert "no agent 'nobody'; agents: front, sales" in capsys.readouterr().err
